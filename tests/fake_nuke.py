"""A FAKE `nuke` module: Nuke cannot run here (no licence, no binary), so the adapter's real
init.py, menu.py, gizmo buttons and callbacks run against this stand-in.

It records what a session would see (knob defaults, menus, nodes created, executes, messages,
progress) and behaves like Nuke where the tests depend on it: `createNode("FaceRestore")` builds
the node from the gizmo file's own user knobs (Link knobs take the inner OFX node's values);
`execute(Write, first, last)` writes the Write's input frames to its file, which is what a
raw-data Write of a Read does (pixels unchanged); button knobs run their Python with
`thisNode()` set. Names and signatures follow the published API (types-nuke).
"""

from __future__ import annotations

import os
import re
import types

import OpenImageIO as oiio

INPUTS = 1
env = {"gui": False}
plugin_path: list[str] = []
defaults: dict[str, str] = {}
messages: list[str] = []
executed: list[tuple] = []
menus: dict[str, FakeMenu] = {}
progress_tasks: list[ProgressTask] = []
panel_answers: list[dict | None] = []  # what the next Panels "show" returns: values, or None = cancelled
nodes: list[Node] = []
_root_name = ["Root"]
_this: list[Node] = []


def reset(script: str = "Root") -> None:
    for box in (defaults, messages, executed, menus, progress_tasks, panel_answers, nodes, _this):
        box.clear()
    _root_name[0] = script
    plugin_path.clear()
    ProgressTask.cancel_after = None  # a test that pressed cancel must not cancel the next one's render


class Knob:
    def __init__(self, name: str, value=None, kind: int = 1, code: str = "", link: Knob | None = None) -> None:
        self._name, self._value, self.kind, self.code, self.link = name, value, kind, code, link
        self.node: Node | None = None

    def name(self) -> str:
        return self._name

    def value(self, index: int = 0):
        return self.link.value() if self.link else self._value

    def setValue(self, val, chan: int = 0) -> bool:
        if self.link:
            return self.link.setValue(val)
        self._value = val
        return True

    def execute(self) -> None:  # PyScript_Knob: run its Python with this node as thisNode()
        if self.code:
            _this.append(self.node)
            try:
                exec(self.code, {"nuke": module()})
            finally:
                _this.pop()


class Script_Knob(Knob):
    pass


class Node:
    def __init__(self, cls: str, knobs: list[Knob] = ()) -> None:
        self._class, self._inputs, self._xy = cls, [], (0, 0)
        self._knobs: dict[str, Knob] = {}
        self._name = f"{cls}{sum(n._class == cls for n in nodes) + 1}"
        for knob in knobs:
            self.addKnob(knob)
        nodes.append(self)

    def addKnob(self, knob: Knob) -> None:
        knob.node = self
        self._knobs[knob.name()] = knob

    def Class(self) -> str:
        return self._class

    def name(self) -> str:
        return self._name

    def setName(self, name: str, uncollide: bool = False, updateExpressions: bool = False) -> None:
        self._name = name

    def knob(self, p, follow_link: bool = False) -> Knob | None:
        return self._knobs.get(p)

    def knobs(self) -> dict:
        return dict(self._knobs)

    def __getitem__(self, name: str) -> Knob:
        if name not in self._knobs:  # Nuke creates plain knobs of built-in nodes on demand here
            self.addKnob(Knob(name, None))
        return self._knobs[name]

    def input(self, index: int) -> Node | None:
        return self._inputs[index] if index < len(self._inputs) else None

    def inputs(self) -> int:
        return len(self._inputs)

    def setInput(self, i: int, node: Node | None) -> bool:
        self._inputs += [None] * (i + 1 - len(self._inputs))
        self._inputs[i] = node
        return True

    def dependent(self, mask: int = INPUTS, forceEvaluate: bool = True) -> list[Node]:
        return [n for n in nodes if self in n._inputs]

    def firstFrame(self) -> int:
        return self._frame_range()[0]

    def lastFrame(self) -> int:
        return self._frame_range()[1]

    def _frame_range(self) -> tuple[int, int]:
        if self._class == "Read":
            return int(self["first"].value()), int(self["last"].value())
        return self.input(0)._frame_range()

    def xpos(self) -> int:
        return self._xy[0]

    def ypos(self) -> int:
        return self._xy[1]

    def setXYpos(self, x: int, y: int) -> None:
        self._xy = (x, y)

    def makeGroup(self) -> Node:  # Gizmo.makeGroup: a Group with the same knobs and contents
        group = Node("Group")
        for name, knob in self._knobs.items():
            group.addKnob(Knob(name, knob._value, knob.kind, knob.code, knob.link))
        return group


class FakeMenu:
    def __init__(self, name: str) -> None:
        self.name, self.commands, self.items = name, {}, {}

    def addMenu(self, name: str, *args, **kwargs) -> FakeMenu:
        return self.items.setdefault(name, FakeMenu(name))

    def addCommand(self, name: str, command=None, shortcut: str = "", *args, **kwargs) -> None:
        self.commands[name] = command

    def menu(self, name: str) -> FakeMenu | None:
        return self.items.get(name)


class ProgressTask:
    cancel_after: int | None = None  # isCancelled() answers True from this call on

    def __init__(self, title: str) -> None:
        self.title, self.progress, self.messages, self.asked = title, [], [], 0
        progress_tasks.append(self)

    def setProgress(self, value: int) -> None:
        self.progress.append(value)

    def setMessage(self, message: str) -> None:
        self.messages.append(message)

    def isCancelled(self) -> bool:
        self.asked += 1
        return ProgressTask.cancel_after is not None and self.asked >= ProgressTask.cancel_after


class Panel:
    def __init__(self, title: str) -> None:
        self.title, self.fields, self.answers = title, {}, {}

    def addBooleanCheckBox(self, label: str, value: bool) -> None:
        self.fields[label] = value

    def addEnumerationPulldown(self, label: str, options: str) -> None:
        self.fields[label] = options.split()[0]

    def addSingleLineInput(self, label: str, value: str) -> None:
        self.fields[label] = value

    def show(self) -> int:
        answer = panel_answers.pop(0) if panel_answers else {}
        if answer is None:
            return 0
        self.answers = {**self.fields, **answer}
        return 1

    def value(self, label: str):
        return self.answers[label]


def knobDefault(classknob: str, value: str | None = None) -> str | None:
    if value is None:
        return defaults.get(classknob)
    defaults[classknob] = value
    return None


def menu(name: str) -> FakeMenu:
    return menus.setdefault(name, FakeMenu(name))


def message(prompt: str) -> None:
    messages.append(prompt)


def root() -> types.SimpleNamespace:
    return types.SimpleNamespace(name=lambda: _root_name[0])


def thisNode() -> Node:
    return _this[-1]


def toNode(s: str) -> Node | None:
    return next((n for n in nodes if n.name() == s), None)


def selectedNode() -> Node:
    chosen = [n for n in nodes if n.knob("selected") and n["selected"].value()]
    if not chosen:
        raise ValueError("no node selected")
    return chosen[-1]


def delete(n: Node) -> None:
    nodes.remove(n)
    for other in nodes:
        other._inputs = [None if i is n else i for i in other._inputs]


def executeInMainThreadWithResult(call, args=(), kwargs=None):
    return call(*args, **(kwargs or {}))


def loadToolset(filename: str) -> Node | None:
    executed.append(("loadToolset", filename))
    return None


def createNode(typ: str, knobs: str = "", inpanel: bool = True) -> Node:
    if typ == "FaceRestore":
        return _gizmo_node(typ)
    node = Node(typ)
    if typ == "Read":
        node.addKnob(Script_Knob("reload", kind=22))
    return node


def execute(nameOrNode, start: int, end: int, incr: int = 1, views=None, continueOnError: bool = False) -> None:
    """A raw-data Write of a Read: each frame's pixels and channels as they are on disk."""
    write = nameOrNode
    executed.append(("execute", write.name(), start, end))
    source = write.input(0)
    assert source is not None and source.Class() == "Read", "the fake executes Writes of Reads only"
    for frame in range(start, end + 1):
        src, dst = _frame_path(source["file"].value(), frame), _frame_path(write["file"].value(), frame)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        image = oiio.ImageBuf(src)
        assert image.write(dst), image.geterror()


def _frame_path(pattern: str, frame: int) -> str:
    return re.sub(r"#+", lambda m: f"{frame:0{len(m.group())}d}", pattern)


def _gizmo_node(cls: str) -> Node:
    """The node as Nuke builds it from `<cls>.gizmo` on the plug-in path: its user knobs, Link
    knobs resolved to the inner OFX node's knobs (with the values the gizmo gives them)."""
    import nkparser

    path = next(os.path.join(d, cls + ".gizmo") for d in plugin_path if os.path.exists(os.path.join(d, cls + ".gizmo")))
    text = open(path).read()
    script = nkparser.Script.from_string(text.replace("\nend_group", "\n"))
    gizmo = next(n for n in script.all_nodes() if n.class_name == "Gizmo")
    inner = {n.name: n for n in script.all_nodes() if n is not gizmo}
    node = Node(cls)
    node.inner = {name: Node(n.class_name, [Knob(k.name, _typed(k.value)) for k in n.knobs]) for name, n in inner.items()}
    for n in node.inner.values():
        nodes.remove(n)  # inside the gizmo, not in the DAG
    for knob in gizmo.knobs:
        if knob.name == "addUserKnob":
            node.addKnob(_user_knob(knob.value.raw, node))
        elif node.knob(knob.name):
            node[knob.name].setValue(_typed(knob.value))
    return node


def _typed(value):
    """A knob's value as Nuke's Python gives it: numbers as floats, booleans, text."""
    for typed in (value.as_bool(), value.as_number(), value.as_string()):
        if typed is not None:
            return typed
    return value.raw


def _user_knob(declaration: str, node: Node) -> Knob:
    words = _tcl_words(declaration.strip().strip("{}"))
    pairs = [w for w in words[2:] if not re.fullmatch(r"[+-][A-Z_]+", w)]  # +STARTLINE and other flags
    kind, name, options = int(words[0]), words[1], dict(zip(pairs[::2], pairs[1::2]))
    if kind == 41:
        target_node, target_knob = options["T"].split(".")
        inner_knob = node.inner[target_node][target_knob]
        return Knob(name, kind=kind, link=inner_knob)
    if kind == 22:
        return Knob(name, kind=kind, code=options.get("T", ""))
    return Knob(name, {6: False, 3: 0, 7: 0.0}.get(kind, ""), kind)


def _tcl_words(text: str) -> list[str]:
    words = []
    for match in re.finditer(r'"((?:\\.|[^"\\])*)"|\{([^}]*)\}|(\S+)', text):
        quoted, braced, bare = match.groups()
        if quoted is not None:
            words.append(re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), quoted))
        else:
            words.append(braced if braced is not None else bare)
    return words


def module() -> types.ModuleType:
    import sys

    return sys.modules["nuke"]
