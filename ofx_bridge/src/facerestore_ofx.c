/* FaceRestore OpenFX image effect.
 *
 * The plug-in stays small: it declares the effect, fetches the frames the temporal window
 * needs, and hands pixels to facerestore's Python worker through POSIX shared memory, with
 * control messages (one JSON line each way) on a Unix socket. The worker is started on first
 * render and shared by every instance in the host process. A missing, failing or killed worker
 * becomes an error message on that render: never a crash, never an endless wait. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ofx_decls.h"

#define PLUGIN_ID "com.facerestore.FaceRestore"
#define MASK_CLIP "Mask"
/* Last resort when neither the environment nor the bundle names a worker. */
#define FALLBACK_WORKER_COMMAND "facerestore worker"

extern char **environ;

static OfxHost *g_host;
static const OfxPropertySuiteV1 *g_props;
static const OfxImageEffectSuiteV1 *g_effects;
static const OfxParameterSuiteV1 *g_params;
static const OfxMessageSuiteV1 *g_messages; /* optional */

/* One worker per host process, used by one render at a time. */
static pthread_mutex_t g_worker_lock = PTHREAD_MUTEX_INITIALIZER;
static pid_t g_worker_pid = -1;
static int g_worker_fd = -1;
static char g_socket_dir[96];   /* private to the user (0700, unpredictable name) */
static char g_socket_path[108]; /* the worker's socket inside it */
static long g_request_id = 0;
static long g_shm_counter = 0; /* taken atomically: instances allocate before the worker lock */
static long g_abandoned_id = 0; /* a request whose answer must be skipped (render aborted) */
static char g_line[65536];
static size_t g_line_len = 0;

/* Parameters: ids are the node spec's (permanent, saved in host scripts). */
typedef enum { P_DOUBLE, P_INT, P_STRING, P_CHOICE } ParamKind;
typedef struct {
    const char *id, *label, *hint;
    ParamKind kind;
    double def, min, max;
    const char *def_string;
    const char *const *options;
    int n_options;
    double increment; /* doubles: slider step and digits shown (generated from the range) */
    int digits;
} ParamSpec;

/* The table, generated from the node spec at build time (ofx_bridge/params.py). */
#include "params.h"
#define N_PARAMS (int)(sizeof(PARAMS) / sizeof(PARAMS[0]))

static void report(OfxImageEffectHandle effect, const char *fmt, ...) {
    char text[2048];
    va_list args;
    va_start(args, fmt);
    vsnprintf(text, sizeof text, fmt, args);
    va_end(args);
    if (g_messages) g_messages->message(effect, kOfxMessageError, "", "FaceRestore: %s", text);
    fprintf(stderr, "FaceRestore: %s\n", text);
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Seconds a render may wait for the worker (FACERESTORE_WORKER_TIMEOUT, default 600). */
static double worker_timeout(void) {
    const char *text = getenv("FACERESTORE_WORKER_TIMEOUT");
    double timeout = text ? atof(text) : 600.0;
    return timeout > 0 ? timeout : 600.0;
}

/* Bounded: SIGTERM (and SIGCONT, so a stopped worker can act on it), a short grace, then
 * SIGKILL, which also ends a stopped or wedged worker. Never waits without limit. */
static void stop_worker(void) {
    if (g_worker_fd >= 0) close(g_worker_fd);
    g_worker_fd = -1;
    if (g_worker_pid > 0) {
        kill(g_worker_pid, SIGTERM);
        kill(g_worker_pid, SIGCONT);
        double deadline = now_seconds() + 2.0;
        while (waitpid(g_worker_pid, NULL, WNOHANG) == 0) {
            if (now_seconds() > deadline) {
                kill(g_worker_pid, SIGKILL);
                waitpid(g_worker_pid, NULL, 0);
                break;
            }
            usleep(20000);
        }
    }
    g_worker_pid = -1;
    g_line_len = 0;
    g_abandoned_id = 0;
    if (g_socket_path[0]) unlink(g_socket_path);
    if (g_socket_dir[0]) rmdir(g_socket_dir);
    g_socket_path[0] = g_socket_dir[0] = 0;
}

/* Sends all of `data`; never raises SIGPIPE in the host (a dead worker is an error, not a
 * signal that ends the host process). */
static int send_all(const char *data, size_t size) {
    while (size > 0) {
        ssize_t sent = send(g_worker_fd, data, size, MSG_NOSIGNAL);
        if (sent < 0 && errno == EINTR) continue;
        if (sent <= 0) return -1;
        data += sent;
        size -= (size_t)sent;
    }
    return 0;
}

/* The peer of the worker socket must run as this user. */
static int peer_is_this_user(int fd) {
    struct ucred cred;
    socklen_t len = sizeof cred;
    return getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 && cred.uid == getuid();
}

/* Why the worker is gone, or NULL while it runs. */
static const char *worker_exit_reason(char *buf, size_t n) {
    int status;
    if (g_worker_pid <= 0) return "no worker";
    if (waitpid(g_worker_pid, &status, WNOHANG) != g_worker_pid) return NULL;
    if (WIFSIGNALED(status))
        snprintf(buf, n, "the worker was killed by signal %d", WTERMSIG(status));
    else
        snprintf(buf, n, "the worker exited with status %d", WEXITSTATUS(status));
    g_worker_pid = -1;
    return buf;
}

/* The bundle's Contents/Resources/worker.json, from where this binary was loaded. */
static int resources_file(char *path, size_t n) {
    Dl_info info;
    if (!dladdr((void *)&resources_file, &info) || !info.dli_fname) return -1;
    snprintf(path, n, "%s", info.dli_fname);
    for (int up = 0; up < 2; up++) { /* Contents/<arch>/FaceRestore.ofx -> Contents */
        char *slash = strrchr(path, '/');
        if (!slash) return -1;
        *slash = 0;
    }
    size_t used = strlen(path);
    return snprintf(path + used, n - used, "/Resources/worker.json") < (int)(n - used) ? 0 : -1;
}

/* The "command" string of a worker.json ({"command": "shell words"}), JSON escapes decoded. */
static int read_worker_json(const char *path, char *out, size_t n) {
    char text[8192];
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t size = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[size] = 0;
    const char *p = strstr(text, "\"command\"");
    if (!p) return -2;
    p += strlen("\"command\"");
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == ':') p++;
    if (*p++ != '"') return -2;
    size_t k = 0;
    for (; *p && *p != '"' && k + 1 < n; p++) {
        if (*p != '\\') {
            out[k++] = *p;
            continue;
        }
        p++;
        char c = *p == 'n' ? '\n' : *p == 't' ? '\t' : *p; /* \" \\ \/ as themselves */
        if (*p == 'u') return -2;                          /* not written by our installer */
        if (!c) return -2;
        out[k++] = c;
    }
    out[k] = 0;
    return *p == '"' && k > 0 ? 0 : -2;
}

/* The worker command, found when a render needs it (never compiled in, so the bundle can be
 * installed anywhere): $FACERESTORE_WORKER_CMD, else the bundle's Resources/worker.json
 * (written by the build and the installer), else `facerestore worker` on PATH. `tried` says
 * what was looked at, for the error message. */
static const char *worker_command(char *buf, size_t n, char *tried, size_t tried_n) {
    const char *env = getenv("FACERESTORE_WORKER_CMD");
    if (env && *env) {
        snprintf(tried, tried_n, "FACERESTORE_WORKER_CMD");
        return env;
    }
    char path[4096] = "";
    int found = resources_file(path, sizeof path) == 0 ? read_worker_json(path, buf, n) : -1;
    if (found == 0) {
        snprintf(tried, tried_n, "%s", path);
        return buf;
    }
    snprintf(tried, tried_n, "FACERESTORE_WORKER_CMD (unset), %s (%s), then PATH", path[0] ? path : "Resources",
             found == -1 ? "missing" : "no \"command\" string");
    return FALLBACK_WORKER_COMMAND;
}

static int start_worker(char *err, size_t n) {
    char command_buf[4096], tried[4200];
    const char *command = worker_command(command_buf, sizeof command_buf, tried, sizeof tried);
    /* A fresh private directory (0700, unpredictable name) holds the socket: no other user can
     * connect to the worker or put a socket of theirs in its place. */
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp || strlen(tmp) > 64) tmp = "/tmp"; /* the socket path must fit in sun_path */
    snprintf(g_socket_dir, sizeof g_socket_dir, "%s/facerestore-%d-XXXXXX", tmp, (int)getuid());
    if (!mkdtemp(g_socket_dir)) {
        snprintf(err, n, "cannot create a private directory for the worker's socket in %s: %s", tmp, strerror(errno));
        g_socket_dir[0] = 0;
        return -1;
    }
    snprintf(g_socket_path, sizeof g_socket_path, "%s/worker.sock", g_socket_dir);
    char shell_command[4096];
    snprintf(shell_command, sizeof shell_command, "exec %s --socket '%s'", command, g_socket_path);
    char *argv[] = {"/bin/sh", "-c", shell_command, NULL};
    if (posix_spawn(&g_worker_pid, "/bin/sh", NULL, NULL, argv, environ) != 0) {
        snprintf(err, n, "cannot start the worker (%s, from %s): %s", command, tried, strerror(errno));
        g_worker_pid = -1;
        stop_worker();
        return -1;
    }
    /* The first start imports torch and loads models. */
    double start_limit = worker_timeout() < 120.0 ? worker_timeout() : 120.0;
    double deadline = now_seconds() + start_limit;
    while (now_seconds() < deadline) {
        char reason[128];
        if (worker_exit_reason(reason, sizeof reason)) {
            snprintf(err, n, "%s while starting (command: %s, from %s)", reason, command, tried);
            stop_worker();
            return -1;
        }
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un addr = {.sun_family = AF_UNIX};
        snprintf(addr.sun_path, sizeof addr.sun_path, "%s", g_socket_path);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0) {
            g_worker_fd = fd;
            if (peer_is_this_user(fd)) return 0;
            snprintf(err, n, "the worker's socket belongs to another user");
            stop_worker();
            return -1;
        }
        if (fd >= 0) close(fd);
        usleep(100000);
    }
    snprintf(err, n, "the worker did not answer within %.0f s (command: %s, from %s)", start_limit, command, tried);
    stop_worker();
    return -1;
}

/* Next response line into g_line; 1 = got one, 0 = aborted, -1 = error (err set). */
static int read_line(OfxImageEffectHandle effect, double timeout, char *err, size_t n) {
    double deadline = now_seconds() + timeout;
    for (;;) {
        char *newline = memchr(g_line, '\n', g_line_len);
        if (newline) {
            *newline = 0;
            return 1;
        }
        if (effect && g_effects->abort(effect)) return 0;
        char reason[128];
        if (worker_exit_reason(reason, sizeof reason)) {
            snprintf(err, n, "%s during the render", reason);
            return -1;
        }
        if (now_seconds() > deadline) {
            snprintf(err, n, "the worker gave no answer within %.0f s", timeout);
            return -1;
        }
        struct pollfd pfd = {.fd = g_worker_fd, .events = POLLIN};
        if (poll(&pfd, 1, 200) <= 0) continue;
        if (g_line_len >= sizeof g_line - 1) {
            snprintf(err, n, "the worker's answer is too long");
            return -1;
        }
        ssize_t got = read(g_worker_fd, g_line + g_line_len, sizeof g_line - 1 - g_line_len);
        if (got <= 0) {
            usleep(50000); /* let the exit status arrive, for a precise message */
            if (!worker_exit_reason(reason, sizeof reason)) snprintf(reason, sizeof reason, "the worker closed the connection");
            snprintf(err, n, "%s during the render", reason);
            return -1;
        }
        g_line_len += (size_t)got;
    }
}

static void consume_line(void) {
    size_t used = strlen(g_line) + 1;
    if (used > g_line_len) used = g_line_len; /* never past what was read */
    memmove(g_line, g_line + used, g_line_len - used);
    g_line_len -= used;
}

/* The value after "key": in the answer line (whitespace allowed), or NULL. */
static const char *json_value(const char *key) {
    char quoted[64];
    snprintf(quoted, sizeof quoted, "\"%s\"", key);
    const char *p = strstr(g_line, quoted);
    if (!p) return NULL;
    p += strlen(quoted);
    while (*p == ' ' || *p == ':') p++;
    return p;
}

static long line_id(void) {
    const char *p = json_value("id");
    return p ? strtol(p, NULL, 10) : -1;
}

static void json_string(char *out, size_t n, const char *s) {
    size_t k = 0;
    out[k++] = '"';
    for (; *s && k + 7 < n; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[k++] = '\\';
            out[k++] = (char)c;
        } else if (c < 0x20) {
            k += (size_t)snprintf(out + k, n - k, "\\u%04x", c);
        } else {
            out[k++] = (char)c;
        }
    }
    out[k++] = '"';
    out[k] = 0;
}

/* ---- describing ---- */

static OfxStatus describe(OfxImageEffectHandle effect) {
    OfxPropertySetHandle props;
    g_effects->getPropertySet(effect, &props);
    g_props->propSetString(props, kOfxPropLabel, 0, "FaceRestore");
    g_props->propSetString(props, kOfxImageEffectPluginPropGrouping, 0, "facerestore");
    g_props->propSetString(props, kOfxPropPluginDescription, 0,
                           "Restores the faces in a scene-linear plate and outputs a soft face matte; "
                           "other pixels are untouched.");
    g_props->propSetString(props, kOfxImageEffectPropSupportedContexts, 0, kOfxImageEffectContextFilter);
    g_props->propSetString(props, kOfxImageEffectPropSupportedContexts, 1, kOfxImageEffectContextGeneral);
    g_props->propSetString(props, kOfxImageEffectPropSupportedPixelDepths, 0, kOfxBitDepthFloat);
    g_props->propSetInt(props, kOfxImageEffectPropTemporalClipAccess, 0, 1);
    g_props->propSetInt(props, kOfxImageEffectPropSupportsTiles, 0, 0);
    g_props->propSetInt(props, kOfxImageEffectPropSupportsMultiResolution, 0, 0);
    g_props->propSetString(props, kOfxImageEffectPluginRenderThreadSafety, 0, kOfxImageEffectRenderInstanceSafe);
    /* Pixels go to the worker through host memory; device buffers are not consumed yet. */
    g_props->propSetString(props, kOfxImageEffectPropCudaRenderSupported, 0, "false");
    return kOfxStatOK;
}

static OfxStatus describe_in_context(OfxImageEffectHandle effect, OfxPropertySetHandle in_args) {
    char *context = NULL;
    g_props->propGetString(in_args, kOfxImageEffectPropContext, 0, &context);
    OfxPropertySetHandle clip;
    g_effects->clipDefine(effect, kOfxImageEffectSimpleSourceClipName, &clip);
    g_props->propSetString(clip, kOfxImageEffectPropSupportedComponents, 0, kOfxImageComponentRGBA);
    g_props->propSetInt(clip, kOfxImageEffectPropTemporalClipAccess, 0, 1);
    g_effects->clipDefine(effect, kOfxImageEffectOutputClipName, &clip);
    g_props->propSetString(clip, kOfxImageEffectPropSupportedComponents, 0, kOfxImageComponentRGBA);
    if (context && strcmp(context, kOfxImageEffectContextGeneral) == 0) {
        g_effects->clipDefine(effect, MASK_CLIP, &clip);
        g_props->propSetString(clip, kOfxImageEffectPropSupportedComponents, 0, kOfxImageComponentAlpha);
        g_props->propSetInt(clip, kOfxImageClipPropOptional, 0, 1);
        g_props->propSetInt(clip, kOfxImageClipPropIsMask, 0, 1);
    }
    OfxParamSetHandle param_set;
    g_effects->getParamSet(effect, &param_set);
    for (int i = 0; i < N_PARAMS; i++) {
        const ParamSpec *p = &PARAMS[i];
        static const char *types[] = {kOfxParamTypeDouble, kOfxParamTypeInteger, kOfxParamTypeString,
                                      kOfxParamTypeChoice};
        OfxPropertySetHandle pp;
        if (g_params->paramDefine(param_set, types[p->kind], p->id, &pp) != kOfxStatOK) return kOfxStatErrUnknown;
        g_props->propSetString(pp, kOfxPropLabel, 0, p->label);
        g_props->propSetString(pp, kOfxParamPropHint, 0, p->hint);
        switch (p->kind) {
        case P_DOUBLE:
            g_props->propSetDouble(pp, kOfxParamPropDefault, 0, p->def);
            g_props->propSetDouble(pp, kOfxParamPropMin, 0, p->min);
            g_props->propSetDouble(pp, kOfxParamPropMax, 0, p->max);
            g_props->propSetDouble(pp, kOfxParamPropDisplayMin, 0, p->min);
            g_props->propSetDouble(pp, kOfxParamPropDisplayMax, 0, p->max);
            g_props->propSetDouble(pp, kOfxParamPropIncrement, 0, p->increment);
            g_props->propSetInt(pp, kOfxParamPropDigits, 0, p->digits);
            /* One value per shot, as in the CLI: a frame rendered alone equals the full render. */
            g_props->propSetInt(pp, kOfxParamPropAnimates, 0, 0);
            break;
        case P_INT:
            g_props->propSetInt(pp, kOfxParamPropDefault, 0, (int)p->def);
            g_props->propSetInt(pp, kOfxParamPropMin, 0, (int)p->min);
            g_props->propSetInt(pp, kOfxParamPropMax, 0, (int)p->max);
            g_props->propSetInt(pp, kOfxParamPropAnimates, 0, 0);
            break;
        case P_STRING:
            g_props->propSetString(pp, kOfxParamPropDefault, 0, p->def_string);
            g_props->propSetInt(pp, kOfxParamPropAnimates, 0, 0);
            break;
        case P_CHOICE:
            for (int k = 0; k < p->n_options; k++) g_props->propSetString(pp, kOfxParamPropChoiceOption, k, p->options[k]);
            g_props->propSetInt(pp, kOfxParamPropDefault, 0, (int)p->def);
            g_props->propSetInt(pp, kOfxParamPropAnimates, 0, 0);
            break;
        }
    }
    return kOfxStatOK;
}

/* ---- rendering ---- */

static int window_radius(OfxImageEffectHandle effect, OfxTime time) {
    OfxParamSetHandle param_set;
    OfxParamHandle param;
    int window = 5;
    g_effects->getParamSet(effect, &param_set);
    if (g_params->paramGetHandle(param_set, "temporal_window", &param, NULL) == kOfxStatOK)
        g_params->paramGetValueAtTime(param, time, &window);
    return window > 1 ? window / 2 : 0;
}

static OfxStatus get_frames_needed(OfxImageEffectHandle effect, OfxPropertySetHandle in_args,
                                   OfxPropertySetHandle out_args) {
    OfxTime time = 0;
    g_props->propGetDouble(in_args, kOfxPropTime, 0, &time);
    /* Two radii: a frame's restored neighbours are themselves fused over their own windows. */
    int reach = 2 * window_radius(effect, time);
    double range[2] = {time - reach, time + reach};
    g_props->propSetDoubleN(out_args, "OfxImageClipPropFrameRange_" kOfxImageEffectSimpleSourceClipName, 2, range);
    return kOfxStatOK;
}

static OfxStatus get_clip_preferences(OfxPropertySetHandle out_args) {
    g_props->propSetString(out_args, "OfxImageClipPropComponents_" kOfxImageEffectOutputClipName, 0,
                           kOfxImageComponentRGBA);
    g_props->propSetString(out_args, "OfxImageClipPropDepth_" kOfxImageEffectOutputClipName, 0, kOfxBitDepthFloat);
    return kOfxStatOK;
}

typedef struct {
    OfxPropertySetHandle handle;
    float *data;
    OfxRectI bounds;
    int row_bytes;
} Image;

static int fetch_image(OfxImageClipHandle clip, OfxTime time, Image *image) {
    if (g_effects->clipGetImage(clip, time, NULL, &image->handle) != kOfxStatOK) return -1;
    void *data = NULL;
    g_props->propGetPointer(image->handle, kOfxImagePropData, 0, &data);
    g_props->propGetIntN(image->handle, kOfxImagePropBounds, 4, &image->bounds.x1);
    g_props->propGetInt(image->handle, kOfxImagePropRowBytes, 0, &image->row_bytes);
    image->data = data;
    return data ? 0 : -1;
}

static float *pixel(const Image *image, int x, int y) {
    return (float *)((char *)image->data + (ptrdiff_t)(y - image->bounds.y1) * image->row_bytes) +
           4 * (x - image->bounds.x1);
}

/* The clip's pixel aspect (2 for a 2x anamorphic plate); 1 when the host gives none, or one
 * outside what the node takes (0.25-4, as the CLI reads an EXR header). */
static double clip_pixel_aspect(OfxImageClipHandle clip) {
    OfxPropertySetHandle props;
    double aspect = 1.0;
    if (g_effects->clipGetPropertySet(clip, &props) != kOfxStatOK ||
        g_props->propGetDouble(props, kOfxImagePropPixelAspectRatio, 0, &aspect) != kOfxStatOK ||
        !(aspect >= 0.25 && aspect <= 4.0))
        return 1.0;
    return aspect;
}

/* The parameters as JSON; a pixel aspect left at 0 (automatic) becomes the clip's. */
static void append_param_json(char *json, size_t n, OfxParamSetHandle param_set, OfxTime time,
                              OfxImageClipHandle clip) {
    size_t k = strlen(json);
    for (int i = 0; i < N_PARAMS; i++) {
        const ParamSpec *p = &PARAMS[i];
        OfxParamHandle param;
        if (g_params->paramGetHandle(param_set, p->id, &param, NULL) != kOfxStatOK) continue;
        char value[2200] = "null";
        if (p->kind == P_DOUBLE) {
            double v = p->def;
            g_params->paramGetValueAtTime(param, time, &v);
            if (v == 0.0 && strcmp(p->id, "pixel_aspect") == 0) v = clip_pixel_aspect(clip);
            snprintf(value, sizeof value, "%.17g", v);
        } else if (p->kind == P_INT) {
            int v = (int)p->def;
            g_params->paramGetValueAtTime(param, time, &v);
            snprintf(value, sizeof value, "%d", v);
        } else if (p->kind == P_CHOICE) {
            int v = (int)p->def;
            g_params->paramGetValueAtTime(param, time, &v);
            json_string(value, sizeof value, p->options[(v >= 0 && v < p->n_options) ? v : 0]);
        } else {
            char *v = NULL;
            g_params->paramGetValueAtTime(param, time, &v);
            json_string(value, sizeof value, v ? v : "");
        }
        k += (size_t)snprintf(json + k, n - k, "%s\"%s\":%s", i ? "," : "", p->id, value);
    }
    snprintf(json + k, n - k, "}");
}

/* A new shared-memory segment of `planes` RGBA float planes, the first `count` filled with
 * `frames` cropped to `bounds`, rows top to bottom. Unique per call even when instances render
 * at once (the counter is atomic), and not guessable (random suffix). */
static float *make_segment(char *name, size_t name_n, int *fd, size_t total, const Image *frames, int count,
                           OfxRectI bounds) {
    int width = bounds.x2 - bounds.x1, height = bounds.y2 - bounds.y1;
    unsigned long long nonce = 0;
    if (getrandom(&nonce, sizeof nonce, 0) != (ssize_t)sizeof nonce) nonce = (unsigned long long)now_seconds() * 1000003ULL;
    snprintf(name, name_n, "/facerestore-%d-%ld-%016llx", (int)getpid(),
             __atomic_add_fetch(&g_shm_counter, 1, __ATOMIC_SEQ_CST), nonce);
    float *shared = MAP_FAILED;
    *fd = shm_open(name, O_CREAT | O_RDWR | O_EXCL, 0600);
    if (*fd < 0 || ftruncate(*fd, (off_t)total) != 0 ||
        (shared = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED, *fd, 0)) == MAP_FAILED)
        return NULL;
    memset(shared, 0, total);
    for (int f = 0; f < count; f++) {
        float *plane_start = shared + (size_t)f * width * height * 4;
        for (int row = 0; row < height; row++) {
            int y = bounds.y2 - 1 - row;
            if (y < frames[f].bounds.y1 || y >= frames[f].bounds.y2) continue;
            int x0 = bounds.x1 > frames[f].bounds.x1 ? bounds.x1 : frames[f].bounds.x1;
            int x1 = bounds.x2 < frames[f].bounds.x2 ? bounds.x2 : frames[f].bounds.x2;
            if (x1 > x0)
                memcpy(plane_start + ((size_t)row * width + (x0 - bounds.x1)) * 4, pixel(&frames[f], x0, y),
                       (size_t)(x1 - x0) * 4 * sizeof(float));
        }
    }
    return shared;
}

static void free_segment(const char *name, int fd, float *shared, size_t total) {
    if (shared && shared != MAP_FAILED) munmap(shared, total);
    if (fd >= 0) {
        close(fd);
        shm_unlink(name);
    }
}

/* Send one request line and read its answer. 1: answered (the line is in g_line, to consume),
 * 0: the host aborted (the answer will be skipped), -1: the worker failed (err says how). */
static int ask_worker(OfxImageEffectHandle effect, const char *request, long id, double timeout, char *err, size_t n) {
    if (send_all(request, strlen(request)) != 0) {
        snprintf(err, n, "cannot send the request to the worker: %s", strerror(errno));
        return -1;
    }
    int got = read_line(effect, timeout, err, n);
    if (got == 0) g_abandoned_id = id;
    return got;
}

/* The shot's frames streamed to the worker in order, a few at a time, so it tracks the whole
 * shot once (as `facerestore render` does). 1: analysed; 0: aborted by the host; -1: a frame
 * was not available (the render then tracks over its own window); -2: the worker failed or
 * refused (err says how; the render fails with it). Called with the worker lock held. */
static int stream_shot(OfxImageEffectHandle effect, OfxImageClipHandle clip, const double range[2], OfxRectI bounds,
                       OfxParamSetHandle param_set, OfxTime time, double timeout, char *err, size_t n) {
    enum { BATCH = 4 };
    int width = bounds.x2 - bounds.x1, height = bounds.y2 - bounds.y1;
    size_t plane = (size_t)width * height * 4 * sizeof(float);
    for (double t = range[0]; t <= range[1]; t += BATCH) {
        Image frames[BATCH];
        double times[BATCH];
        int count = 0, missing = 0;
        for (; count < BATCH && t + count <= range[1]; count++) {
            frames[count] = (Image){0};
            if (fetch_image(clip, t + count, &frames[count]) != 0) {
                missing = 1;
                if (frames[count].handle) g_effects->clipReleaseImage(frames[count].handle);
                break;
            }
            times[count] = t + count;
        }
        int result = -1;
        if (missing) {
            snprintf(err, n, "the host gave no frame %g of the clip", t + count);
        } else {
            char shm_name[80];
            int fd = -1;
            size_t total = plane * count;
            float *shared = make_segment(shm_name, sizeof shm_name, &fd, total, frames, count, bounds);
            if (!shared) {
                snprintf(err, n, "cannot allocate %zu bytes of shared memory: %s", total, strerror(errno));
            } else {
                static char request[16384];
                long id = ++g_request_id;
                int k = snprintf(request, sizeof request,
                                 "{\"id\":%ld,\"op\":\"analyse\",\"instance\":\"%p\",\"shm\":\"%s\",\"width\":%d,"
                                 "\"height\":%d,\"range\":[%.17g,%.17g],\"times\":[",
                                 id, (void *)effect, shm_name + 1, width, height, range[0], range[1]);
                for (int f = 0; f < count; f++) k += snprintf(request + k, sizeof request - k, "%s%.17g", f ? "," : "", times[f]);
                snprintf(request + k, sizeof request - k, "],\"params\":{");
                append_param_json(request, sizeof request - 2, param_set, time, clip);
                strcat(request, "}\n");
                result = ask_worker(effect, request, id, timeout, err, n);
                if (result == 1) {
                    const char *ok = json_value("ok"), *error = json_value("error");
                    if (!(ok && strncmp(ok, "true", 4) == 0 && line_id() == id)) {
                        snprintf(err, n, "%s", error && *error == '"' ? error + 1 : g_line);
                        char *end = strrchr(err, '"');
                        if (end) *end = 0;
                        result = -2;
                    }
                    consume_line();
                } else if (result < 0) {
                    stop_worker();
                    result = -2;
                }
            }
            free_segment(shm_name, fd, shared, total);
        }
        for (int f = 0; f < count; f++) g_effects->clipReleaseImage(frames[f].handle);
        if (result != 1) return result;
    }
    return 1;
}

static OfxStatus render(OfxImageEffectHandle effect, OfxPropertySetHandle in_args) {
    OfxTime time = 0;
    g_props->propGetDouble(in_args, kOfxPropTime, 0, &time);
    OfxImageClipHandle source_clip, output_clip;
    g_effects->clipGetHandle(effect, kOfxImageEffectSimpleSourceClipName, &source_clip, NULL);
    g_effects->clipGetHandle(effect, kOfxImageEffectOutputClipName, &output_clip, NULL);
    Image output = {0}, centre = {0};
    if (fetch_image(output_clip, time, &output) || fetch_image(source_clip, time, &centre)) {
        if (output.handle) g_effects->clipReleaseImage(output.handle);
        report(effect, "the host gave no image at time %g", time);
        return kOfxStatFailed;
    }
    int width = centre.bounds.x2 - centre.bounds.x1, height = centre.bounds.y2 - centre.bounds.y1;
    int reach = 2 * window_radius(effect, time);
    Image frames[64];
    double times[64];
    int count = 0, centre_index = 0;
    for (int dt = -reach; dt <= reach && count < 64; dt++) {
        if (dt == 0) {
            frames[count] = centre;
            centre_index = count;
            times[count++] = time;
            continue;
        }
        Image image = {0};
        if (fetch_image(source_clip, time + dt, &image) == 0) {
            frames[count] = image;
            times[count++] = time + dt;
        } else if (image.handle) {
            g_effects->clipReleaseImage(image.handle);
        }
    }

    /* Shared memory: the frames, then the result; RGBA float rows top to bottom. */
    size_t plane = (size_t)width * height * 4 * sizeof(float);
    size_t total = plane * (count + 1);
    char shm_name[80];
    int shm_fd = -1;
    OfxStatus status = kOfxStatFailed;
    float *shared = make_segment(shm_name, sizeof shm_name, &shm_fd, total, frames, count, centre.bounds);
    if (!shared) {
        report(effect, "cannot allocate %zu bytes of shared memory: %s", total, strerror(errno));
        goto done;
    }
    /* The source clip's frame range: the worker keeps the shot's analysis and restored frames
     * across renders under it. */
    double clip_range[2] = {0, -1};
    OfxPropertySetHandle source_props;
    if (g_effects->clipGetPropertySet(source_clip, &source_props) == kOfxStatOK)
        g_props->propGetDoubleN(source_props, kOfxImageEffectPropFrameRange, 2, clip_range);
    /* Whole frames only: a fractional time (motion blur, a retime) is not a frame of the shot. */
    int per_shot = clip_range[1] >= clip_range[0] && clip_range[1] - clip_range[0] <= 100000 &&
                   fabs(time - floor(time + 0.5)) < 1e-6;
    int after_analysis = 0;

    pthread_mutex_lock(&g_worker_lock);
    char err[1024] = "";
    double timeout = worker_timeout();
    char reason[128];
    if (g_worker_fd >= 0 && worker_exit_reason(reason, sizeof reason)) stop_worker(); /* died while idle */
    if (g_worker_fd >= 0 && g_abandoned_id) { /* skip the answer to a render the host aborted */
        int skipped;
        while ((skipped = read_line(NULL, timeout, err, sizeof err)) == 1) {
            long id = line_id();
            consume_line();
            if (id == g_abandoned_id) break;
        }
        g_abandoned_id = 0;
        if (skipped != 1) stop_worker(); /* it never answered: start afresh */
        err[0] = 0;
    }
    if (g_worker_fd < 0 && start_worker(err, sizeof err) != 0) {
        pthread_mutex_unlock(&g_worker_lock);
        report(effect, "%s", err);
        goto done;
    }
    OfxParamSetHandle param_set;
    g_effects->getParamSet(effect, &param_set);
    static char request[16384];
    long id = 0;
    int got = -1;
    for (int attempt = 0; attempt < 3; attempt++) {
        id = ++g_request_id;
        int k = snprintf(request, sizeof request,
                         "{\"id\":%ld,\"op\":\"render\",\"instance\":\"%p\",\"shm\":\"%s\",\"width\":%d,"
                         "\"height\":%d,\"centre\":%d,",
                         id, (void *)effect, shm_name + 1, width, height, centre_index);
        if (per_shot)
            k += snprintf(request + k, sizeof request - k, "\"range\":[%.17g,%.17g],%s", clip_range[0], clip_range[1],
                          after_analysis ? "\"after_analysis\":true," : "");
        k += snprintf(request + k, sizeof request - k, "\"times\":[");
        for (int f = 0; f < count; f++) k += snprintf(request + k, sizeof request - k, "%s%.17g", f ? "," : "", times[f]);
        k += snprintf(request + k, sizeof request - k, "],\"params\":{");
        append_param_json(request, sizeof request - 2, param_set, time, source_clip);
        strcat(request, "}\n");
        got = ask_worker(effect, request, id, timeout, err, sizeof err);
        const char *need = got == 1 && per_shot ? json_value("need") : NULL;
        if (!need || strncmp(need, "\"analysis\"", 10) != 0) break; /* the answer stays for below */
        consume_line();
        if (attempt > 0) { /* analysed, and still not current (frames that change every time): */
            per_shot = 0;  /* render over the window alone */
            continue;
        }
        /* First render of this shot (or a frame changed): stream the clip to the worker once. */
        int streamed = stream_shot(effect, source_clip, clip_range, centre.bounds, param_set, time, timeout, err,
                                   sizeof err);
        if (streamed == 0) {
            got = 0;
            break;
        }
        if (streamed == -2) {
            got = -1; /* the worker failed or refused: say so (the next render starts afresh) */
            break;
        }
        if (streamed < 0) per_shot = 0; /* a frame the host cannot give: render over the window alone */
        after_analysis = 1;
        if (g_worker_fd < 0 && start_worker(err, sizeof err) != 0) {
            got = -1;
            break;
        }
        err[0] = 0;
    }
    if (got == 0) { /* aborted by the host: its answer will be skipped */
        status = kOfxStatOK;
    } else if (got < 0) {
        stop_worker(); /* the next render starts a fresh one */
    } else {
        const char *ok = json_value("ok"), *error = json_value("error");
        if (ok && strncmp(ok, "true", 4) == 0 && line_id() == id) {
            status = kOfxStatOK;
        } else {
            snprintf(err, sizeof err, "%s", error && *error == '"' ? error + 1 : g_line);
            char *end = strrchr(err, '"');
            if (end) *end = 0;
        }
        consume_line();
    }
    pthread_mutex_unlock(&g_worker_lock);
    if (status != kOfxStatOK) {
        report(effect, "%s", err);
        goto done;
    }
    if (got == 1) {
        const float *result = shared + (size_t)count * width * height * 4;
        OfxRectI window;
        g_props->propGetIntN(in_args, kOfxImageEffectPropRenderWindow, 4, &window.x1);
        /* Optional mask input (general context): limits where the change and the matte apply. */
        Image mask = {0};
        int has_mask = 0, output_mode = 0;
        OfxImageClipHandle mask_clip;
        OfxPropertySetHandle mask_props;
        if (g_effects->clipGetHandle(effect, MASK_CLIP, &mask_clip, &mask_props) == kOfxStatOK) {
            int connected = 0;
            g_props->propGetInt(mask_props, kOfxImageClipPropConnected, 0, &connected);
            has_mask = connected && fetch_image(mask_clip, time, &mask) == 0;
        }
        OfxParamHandle output_param;
        if (g_params->paramGetHandle(param_set, "output", &output_param, NULL) == kOfxStatOK)
            g_params->paramGetValueAtTime(output_param, time, &output_mode);
        for (int y = window.y1; y < window.y2; y++) {
            if (y < output.bounds.y1 || y >= output.bounds.y2 || y < centre.bounds.y1 || y >= centre.bounds.y2) continue;
            int row = centre.bounds.y2 - 1 - y;
            for (int x = window.x1; x < window.x2; x++) {
                if (x < output.bounds.x1 || x >= output.bounds.x2 || x < centre.bounds.x1 || x >= centre.bounds.x2)
                    continue;
                const float *r = result + ((size_t)row * width + (x - centre.bounds.x1)) * 4;
                float *o = pixel(&output, x, y);
                memcpy(o, r, 4 * sizeof(float));
                if (!has_mask) continue;
                float m = 0.0f;
                if (x >= mask.bounds.x1 && x < mask.bounds.x2 && y >= mask.bounds.y1 && y < mask.bounds.y2)
                    m = *(float *)((char *)mask.data + (ptrdiff_t)(y - mask.bounds.y1) * mask.row_bytes +
                                   (size_t)(x - mask.bounds.x1) * sizeof(float));
                m = m < 0.0f ? 0.0f : (m > 1.0f ? 1.0f : m);
                const float *src = pixel(&centre, x, y);
                if (output_mode == 2) { /* matte only */
                    for (int c = 0; c < 4; c++) o[c] = r[c] * m;
                } else {
                    for (int c = 0; c < 3; c++) o[c] = src[c] + m * (r[c] - src[c]);
                    if (output_mode == 0) o[3] = r[3] * m;
                }
            }
        }
        if (mask.handle) g_effects->clipReleaseImage(mask.handle);
    }
done:
    free_segment(shm_name, shm_fd, shared, total);
    for (int f = 0; f < count; f++) g_effects->clipReleaseImage(frames[f].handle);
    g_effects->clipReleaseImage(output.handle);
    return status;
}

static OfxStatus main_entry(const char *action, const void *handle, OfxPropertySetHandle in_args,
                            OfxPropertySetHandle out_args) {
    OfxImageEffectHandle effect = (OfxImageEffectHandle)handle;
    if (strcmp(action, kOfxActionLoad) == 0) {
        if (!g_host) return kOfxStatErrMissingHostFeature;
        g_props = g_host->fetchSuite(g_host->host, kOfxPropertySuite, 1);
        g_effects = g_host->fetchSuite(g_host->host, kOfxImageEffectSuite, 1);
        g_params = g_host->fetchSuite(g_host->host, kOfxParameterSuite, 1);
        g_messages = g_host->fetchSuite(g_host->host, kOfxMessageSuite, 1);
        return (g_props && g_effects && g_params) ? kOfxStatOK : kOfxStatErrMissingHostFeature;
    }
    if (strcmp(action, kOfxActionUnload) == 0) {
        pthread_mutex_lock(&g_worker_lock);
        stop_worker();
        pthread_mutex_unlock(&g_worker_lock);
        return kOfxStatOK;
    }
    if (strcmp(action, kOfxActionDescribe) == 0) return describe(effect);
    if (strcmp(action, kOfxImageEffectActionDescribeInContext) == 0) return describe_in_context(effect, in_args);
    if (strcmp(action, kOfxActionCreateInstance) == 0 || strcmp(action, kOfxActionDestroyInstance) == 0)
        return kOfxStatOK;
    if (strcmp(action, kOfxImageEffectActionGetClipPreferences) == 0) return get_clip_preferences(out_args);
    if (strcmp(action, kOfxImageEffectActionGetFramesNeeded) == 0) return get_frames_needed(effect, in_args, out_args);
    if (strcmp(action, kOfxImageEffectActionRender) == 0) return render(effect, in_args);
    return kOfxStatReplyDefault;
}

static void set_host(OfxHost *host) { g_host = host; }

static OfxPlugin g_plugin = {kOfxImageEffectPluginApi, 1, PLUGIN_ID, FR_SPEC_VERSION_MAJOR, FR_SPEC_VERSION_MINOR,
                             set_host, main_entry};

FR_OFX_EXPORT int OfxGetNumberOfPlugins(void) { return 1; }

FR_OFX_EXPORT OfxPlugin *OfxGetPlugin(int nth) { return nth == 0 ? &g_plugin : NULL; }
