"""Every way `facerestore train` can train one of facerestore's own models, in one table: the
CLI lists, checks and runs recipes from it (no choice written anywhere else).

A recipe names the model it trains from (`--model`), its stage (`--recipe`), the reduced
schedule for a CPU session and the full one meant for a GPU, and what it needs."""

from __future__ import annotations

from dataclasses import dataclass

from facerestore.models import training, training_v2


@dataclass(frozen=True)
class Recipe:
    model: str  # --model: the model this stage belongs to
    name: str  # --recipe
    reduced: training.TrainConfig | training_v2.TrainV2Config
    full: training.TrainConfig | training_v2.TrainV2Config
    summary: str
    needs_faces: bool = False  # --faces: the licensed faces `facerestore data build` wrote

    @property
    def resumable(self) -> bool:
        """Whether its trainer checkpoints (`--resume`): the broad trainer does, the protocol one not."""
        return isinstance(self.reduced, training_v2.TrainV2Config)

    @property
    def trains(self) -> str:
        """The model the recipe writes."""
        return training_v2.model_name(self.reduced) if self.resumable else training.MODEL_NAME

    def run(self, config, out_dir, device: str, resume: bool, progress) -> dict:
        if self.resumable:
            return training_v2.train_v2(config, out_dir, device, resume=resume, progress=progress)
        return training.train(config, out_dir, device, progress=progress)


X4, WINDOW, V2 = "facerestore-face-x4", "facerestore-face-x4-window", "facerestore-face-v2"
RECIPES = (
    Recipe(
        X4,
        "protocol",
        training.REDUCED,
        training.FULL,
        "the first stage of facerestore-face-x4: realesr-animevideov3 on the benchmark's protocol",
    ),
    Recipe(X4, "broad", training_v2.BROAD_X4, training_v2.FULL_BROAD_X4, "its last stage, on the broad degradations"),
    Recipe(
        WINDOW,
        "broad",
        training_v2.WINDOW_X4,
        training_v2.FULL_WINDOW_X4,
        "the window model made from the single-frame one (its aligned neighbours as input)",
    ),
    Recipe(
        WINDOW,
        "varied",
        training_v2.VARIED_WINDOW_X4,
        training_v2.FULL_VARIED_WINDOW_X4,
        "on from the window model, on a bank made to look like more people",
    ),
    Recipe(
        WINDOW,
        "faithful",
        training_v2.FAITHFUL_WINDOW_X4,
        training_v2.FULL_FAITHFUL_WINDOW_X4,
        "on from the varied model, 35 % of its samples nearly clean plates (the default)",
    ),
    Recipe(
        WINDOW,
        "people",
        training_v2.PEOPLE_WINDOW_X4,
        training_v2.FULL_PEOPLE_WINDOW_X4,
        "on from the faithful model, on the ~216 licensed people",
        needs_faces=True,
    ),
    Recipe(
        WINDOW,
        "context",
        training_v2.CONTEXT_WINDOW_X4,
        training_v2.FULL_CONTEXT_WINDOW_X4,
        "v3 with a context encoder, on the same people",
        needs_faces=True,
    ),
    Recipe(
        WINDOW,
        "deep",
        training_v2.DEEP_WINDOW_X4,
        training_v2.FULL_DEEP_WINDOW_X4,
        "v3 twice as deep, the new convolutions starting as the identity",
        needs_faces=True,
    ),
    Recipe(
        WINDOW,
        "deep-new",
        training_v2.DEEP_NEW_WINDOW_X4,
        training_v2.FULL_DEEP_NEW_WINDOW_X4,
        "v3 twice as deep, only the new convolutions learning (v3's kept)",
        needs_faces=True,
    ),
    Recipe(
        WINDOW,
        "exposure",
        training_v2.EXPOSURE_WINDOW_X4,
        training_v2.FULL_EXPOSURE_WINDOW_X4,
        "on from v3, exposures down to three stops under (dark plates)",
        needs_faces=True,
    ),
    Recipe(
        WINDOW,
        "soft",
        training_v2.SOFT_WINDOW_X4,
        training_v2.FULL_SOFT_WINDOW_X4,
        "on from v3, a fifth of its faces soft but clean (video-like shots it should not sharpen)",
        needs_faces=True,
    ),
    Recipe(
        V2,
        "broad",
        training_v2.REDUCED_V2,
        training_v2.FULL_V2,
        "the face-resolution restorer, from scratch (meant for a GPU)",
    ),
)
MODELS = tuple(dict.fromkeys(recipe.model for recipe in RECIPES))
NAMES = tuple(dict.fromkeys(recipe.name for recipe in RECIPES))


def find(model: str, name: str) -> Recipe | None:
    return next((r for r in RECIPES if r.model == model and r.name == name), None)


def stages_named(name: str) -> list[Recipe]:
    return [r for r in RECIPES if r.name == name]


def described() -> str:
    """One line per recipe, for the CLI's help."""
    return "; ".join(
        f"{r.model} {r.name} -> {r.trains}, {r.reduced.steps} steps: {r.summary}"
        + (" (--faces)" if r.needs_faces else "")
        for r in RECIPES
    )
