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

#define MASK_CLIP "Mask"
/* Last resort when neither the environment nor the bundle names a worker. */
#define FALLBACK_WORKER_COMMAND "facerestore worker"

extern char **environ;

static OfxHost *g_host;
static const OfxPropertySuiteV1 *g_props;
static const OfxImageEffectSuiteV1 *g_effects;
static const OfxParameterSuiteV1 *g_params;
static const OfxMessageSuiteV1 *g_messages;   /* optional */
static const OfxMessageSuiteV2 *g_messages2;  /* optional: persistent messages */
static const OfxProgressSuiteV1 *g_progress1; /* optional, as is V2 (preferred) */
static const OfxProgressSuiteV2 *g_progress2;

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

/* `text` as a printf format that prints it as it is: hosts get the whole message in the format,
 * with no arguments (Natron 2.5 printed "FaceRestore: " and lost the text given as an argument). */
static void as_format(const char *text, char *out, size_t n) {
    size_t k = 0;
    for (; *text && k + 2 < n; text++) {
        if (*text == '%') out[k++] = '%';
        out[k++] = *text;
    }
    out[k] = 0;
}

static void report(OfxImageEffectHandle effect, const char *fmt, ...) {
    char text[2048], format[4200];
    va_list args;
    va_start(args, fmt);
    int used = snprintf(text, sizeof text, "FaceRestore: ");
    vsnprintf(text + used, sizeof text - used, fmt, args);
    va_end(args);
    as_format(text, format, sizeof format);
    if (g_messages) g_messages->message(effect, kOfxMessageError, "", format);
    fprintf(stderr, "%s\n", text);
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
    /* The shot's analysis on demand, and a line that says what the frames are. */
    OfxPropertySetHandle pp;
    if (g_params->paramDefine(param_set, kOfxParamTypePushButton, FR_ANALYSE_ID, &pp) != kOfxStatOK)
        return kOfxStatErrUnknown;
    g_props->propSetString(pp, kOfxPropLabel, 0, FR_ANALYSE_LABEL);
    g_props->propSetString(pp, kOfxParamPropHint, 0, FR_ANALYSE_HINT);
    if (g_params->paramDefine(param_set, kOfxParamTypeString, FR_STATUS_ID, &pp) != kOfxStatOK) return kOfxStatErrUnknown;
    g_props->propSetString(pp, kOfxPropLabel, 0, FR_STATUS_LABEL);
    g_props->propSetString(pp, kOfxParamPropHint, 0, FR_STATUS_HINT);
    g_props->propSetString(pp, kOfxParamPropDefault, 0, FR_STATUS_DEFAULT);
    g_props->propSetString(pp, kOfxParamPropStringMode, 0, kOfxParamStringIsLabel);
    g_props->propSetInt(pp, kOfxParamPropAnimates, 0, 0);
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

/* Faces are found anywhere in the frame: every frame the render fetches is the whole source. */
static OfxStatus get_regions_of_interest(OfxImageEffectHandle effect, OfxPropertySetHandle in_args,
                                         OfxPropertySetHandle out_args) {
    OfxTime time = 0;
    OfxImageClipHandle clip;
    OfxRectD rod;
    g_props->propGetDouble(in_args, kOfxPropTime, 0, &time);
    if (g_effects->clipGetHandle(effect, kOfxImageEffectSimpleSourceClipName, &clip, NULL) != kOfxStatOK ||
        g_effects->clipGetRegionOfDefinition(clip, time, &rod) != kOfxStatOK)
        return kOfxStatReplyDefault;
    g_props->propSetDoubleN(out_args, "OfxImageClipPropRoI_" kOfxImageEffectSimpleSourceClipName, 4, &rod.x1);
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

/* An image of `clip`: `region` NULL asks for the region of interest announced for the render. */
static int fetch_region(OfxImageClipHandle clip, OfxTime time, const OfxRectD *region, Image *image) {
    if (g_effects->clipGetImage(clip, time, region, &image->handle) != kOfxStatOK) return -1;
    void *data = NULL;
    g_props->propGetPointer(image->handle, kOfxImagePropData, 0, &data);
    g_props->propGetIntN(image->handle, kOfxImagePropBounds, 4, &image->bounds.x1);
    g_props->propGetInt(image->handle, kOfxImagePropRowBytes, 0, &image->row_bytes);
    image->data = data;
    return data ? 0 : -1;
}

static int fetch_image(OfxImageClipHandle clip, OfxTime time, Image *image) {
    return fetch_region(clip, time, NULL, image);
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

/* The worker, ready for a request: a worker that died while idle is replaced, and the answer to
 * a request the host aborted is skipped first. 0: ready; -1: err says why not. Called with the
 * worker lock held. */
static int worker_ready(char *err, size_t n) {
    char reason[128];
    if (g_worker_fd >= 0 && worker_exit_reason(reason, sizeof reason)) stop_worker(); /* died while idle */
    if (g_worker_fd >= 0 && g_abandoned_id) {
        int skipped;
        while ((skipped = read_line(NULL, worker_timeout(), err, n)) == 1) {
            long id = line_id();
            consume_line();
            if (id == g_abandoned_id) break;
        }
        g_abandoned_id = 0;
        if (skipped != 1) stop_worker(); /* it never answered: start afresh */
        err[0] = 0;
    }
    return g_worker_fd >= 0 || start_worker(err, n) == 0 ? 0 : -1;
}

/* The answer line (in g_line) to request `id`: 1 if it says ok, else 0 with its error in err. */
static int answer_ok(long id, char *err, size_t n) {
    const char *ok = json_value("ok"), *error = json_value("error");
    if (ok && strncmp(ok, "true", 4) == 0 && line_id() == id) return 1;
    snprintf(err, n, "%s", error && *error == '"' ? error + 1 : g_line);
    char *end = strrchr(err, '"');
    if (end) *end = 0;
    return 0;
}

/* A string value of the answer line, JSON escapes decoded (\uXXXX as UTF-8); "" when absent. */
static void answer_string(const char *key, char *out, size_t n) {
    const char *p = json_value(key);
    size_t k = 0;
    if (p && *p == '"') {
        for (p++; *p && *p != '"' && k + 4 < n; p++) {
            if (*p != '\\') {
                out[k++] = *p;
                continue;
            }
            p++;
            if (*p == 'u') {
                unsigned code = 0;
                if (sscanf(p + 1, "%4x", &code) != 1) break;
                p += 4;
                if (code < 0x80) {
                    out[k++] = (char)code;
                } else if (code < 0x800) {
                    out[k++] = (char)(0xc0 | code >> 6);
                    out[k++] = (char)(0x80 | (code & 0x3f));
                } else {
                    out[k++] = (char)(0xe0 | code >> 12);
                    out[k++] = (char)(0x80 | ((code >> 6) & 0x3f));
                    out[k++] = (char)(0x80 | (code & 0x3f));
                }
            } else if (*p) {
                out[k++] = *p == 'n' ? '\n' : *p == 't' ? '\t' : *p;
            } else {
                break;
            }
        }
    }
    out[k] = 0;
}

static int string_param(OfxImageEffectHandle effect, const char *id, char *out, size_t n) {
    OfxParamSetHandle param_set;
    OfxParamHandle param;
    char *value = NULL;
    out[0] = 0;
    g_effects->getParamSet(effect, &param_set);
    if (g_params->paramGetHandle(param_set, id, &param, NULL) != kOfxStatOK || g_params->paramGetValue(param, &value))
        return -1;
    snprintf(out, n, "%s", value ? value : "");
    return 0;
}

static void set_string_param(OfxImageEffectHandle effect, const char *id, const char *value) {
    OfxParamSetHandle param_set;
    OfxParamHandle param;
    g_effects->getParamSet(effect, &param_set);
    if (g_params->paramGetHandle(param_set, id, &param, NULL) == kOfxStatOK && g_params->paramSetValue)
        g_params->paramSetValue(param, value);
}

/* ---- the shot's analysis ("Analyse shot") ---- */

/* Per-instance state, in the instance's kOfxPropInstanceData. */
typedef struct {
    int preview_posted;  /* the "preview" persistent message is on the node */
    char preview_why[512]; /* for the reason it gives (posted again only when that changes) */
} InstanceState;

static InstanceState *instance_state(OfxImageEffectHandle effect) {
    OfxPropertySetHandle props;
    void *state = NULL;
    if (g_effects->getPropertySet(effect, &props) == kOfxStatOK) g_props->propGetPointer(props, kOfxPropInstanceData, 0, &state);
    return state;
}

static void progress_start(OfxImageEffectHandle effect, const char *label) {
    if (g_progress2) g_progress2->progressStart(effect, label, "FaceRestoreAnalyse");
    else if (g_progress1) g_progress1->progressStart(effect, label);
}

/* 1 to go on, 0 when the user cancelled (the host answers kOfxStatReplyNo). */
static int progress_update(OfxImageEffectHandle effect, double done) {
    OfxStatus status = kOfxStatOK;
    if (g_progress2) status = g_progress2->progressUpdate(effect, done);
    else if (g_progress1) status = g_progress1->progressUpdate(effect, done);
    return status != kOfxStatReplyNo;
}

static void progress_end(OfxImageEffectHandle effect) {
    if (g_progress2) g_progress2->progressEnd(effect);
    else if (g_progress1) g_progress1->progressEnd(effect);
}

/* Images may be fetched here: the spec allows it in instanceChanged for a user edit. Each one is
 * asked for with an explicit region (the clip's whole region of definition), so a host has no
 * region of interest to look up outside a render. */
static int fetch_whole_frame(OfxImageClipHandle clip, OfxTime time, Image *image) {
    OfxRectD rod;
    if (g_effects->clipGetRegionOfDefinition(clip, time, &rod) != kOfxStatOK) return -1;
    return fetch_region(clip, time, &rod, image);
}

/* Tells the worker to drop an analysis in progress (cancelled, or a frame missing). */
static void cancel_analysis(OfxImageEffectHandle effect) {
    char request[256], err[256];
    long id = ++g_request_id;
    snprintf(request, sizeof request, "{\"id\":%ld,\"op\":\"analyse\",\"instance\":\"%p\",\"cancel\":true}\n", id,
             (void *)effect);
    if (ask_worker(NULL, request, id, worker_timeout(), err, sizeof err) == 1) consume_line();
    else stop_worker();
}

/* The shot's frames streamed to the worker in order, a few at a time, with the host's progress
 * bar; the worker tracks the whole shot once, as `facerestore render` does, and writes the
 * analysis to `path` (empty: a new file of its own, whose name comes back in `written`).
 * 1: analysed; 0: cancelled; -1: failed (err says why). Called with the worker lock held. */
static int stream_shot(OfxImageEffectHandle effect, OfxImageClipHandle clip, const double range[2], const char *path,
                       char *written, size_t written_n, char *summary, size_t summary_n, char *err, size_t n) {
    enum { BATCH = 4 };
    OfxParamSetHandle param_set;
    g_effects->getParamSet(effect, &param_set);
    OfxRectI bounds = {0};
    int total = (int)(range[1] - range[0]) + 1;
    for (double t = range[0]; t <= range[1]; t += BATCH) {
        if (!progress_update(effect, (t - range[0]) / total)) {
            cancel_analysis(effect);
            return 0;
        }
        Image frames[BATCH];
        double times[BATCH];
        int count = 0, missing = 0;
        for (; count < BATCH && t + count <= range[1]; count++) {
            frames[count] = (Image){0};
            if (fetch_whole_frame(clip, t + count, &frames[count]) != 0) {
                missing = 1;
                if (frames[count].handle) g_effects->clipReleaseImage(frames[count].handle);
                break;
            }
            if (t == range[0] && count == 0) bounds = frames[0].bounds; /* the shot's frame size */
            times[count] = t + count;
        }
        int result = -1;
        if (missing) {
            snprintf(err, n, "the host gave no frame %g of the clip", t + count);
            cancel_analysis(effect);
        } else {
            int width = bounds.x2 - bounds.x1, height = bounds.y2 - bounds.y1;
            size_t total_bytes = (size_t)width * height * 4 * sizeof(float) * count;
            char shm_name[80];
            int fd = -1;
            float *shared = make_segment(shm_name, sizeof shm_name, &fd, total_bytes, frames, count, bounds);
            if (!shared) {
                snprintf(err, n, "cannot allocate %zu bytes of shared memory: %s", total_bytes, strerror(errno));
                cancel_analysis(effect);
            } else {
                static char request[16384];
                char quoted_path[4200];
                json_string(quoted_path, sizeof quoted_path, path);
                long id = ++g_request_id;
                int k = snprintf(request, sizeof request,
                                 "{\"id\":%ld,\"op\":\"analyse\",\"instance\":\"%p\",\"shm\":\"%s\",\"width\":%d,"
                                 "\"height\":%d,\"range\":[%.17g,%.17g],\"path\":%s,\"times\":[",
                                 id, (void *)effect, shm_name + 1, width, height, range[0], range[1], quoted_path);
                for (int f = 0; f < count; f++) k += snprintf(request + k, sizeof request - k, "%s%.17g", f ? "," : "", times[f]);
                snprintf(request + k, sizeof request - k, "],\"params\":{");
                append_param_json(request, sizeof request - 2, param_set, range[0], clip);
                strcat(request, "}\n");
                result = ask_worker(NULL, request, id, worker_timeout(), err, n);
                if (result == 1) {
                    if (!answer_ok(id, err, n)) {
                        result = -1;
                    } else if (json_value("path")) { /* the last batch: analysed and written */
                        answer_string("path", written, written_n);
                        answer_string("summary", summary, summary_n);
                    }
                    consume_line();
                } else {
                    stop_worker();
                    result = -1;
                }
            }
            free_segment(shm_name, fd, shared, total_bytes);
        }
        for (int f = 0; f < count; f++) g_effects->clipReleaseImage(frames[f].handle);
        if (result != 1) return -1;
    }
    progress_update(effect, 1.0);
    return 1;
}

/* The "Analyse shot" button: the whole clip tracked once, stored in the Analysis file, and the
 * Status parameter rewritten (a parameter change: hosts drop the frames they cached as
 * previews and render again, now equal to `facerestore render`). */
static OfxStatus analyse_shot(OfxImageEffectHandle effect) {
    OfxImageClipHandle clip;
    OfxPropertySetHandle clip_props;
    double range[2] = {0, -1};
    if (g_effects->clipGetHandle(effect, kOfxImageEffectSimpleSourceClipName, &clip, &clip_props) != kOfxStatOK ||
        g_props->propGetDoubleN(clip_props, kOfxImageEffectPropFrameRange, 2, range) != kOfxStatOK ||
        !(range[1] >= range[0]) || range[1] - range[0] > 100000) {
        report(effect, "Analyse shot: the host gives no frame range for the Source clip");
        return kOfxStatFailed;
    }
    range[0] = ceil(range[0]);
    range[1] = floor(range[1]);
    char path[4096], written[4096] = "", summary[512] = "", err[1024] = "";
    string_param(effect, "analysis", path, sizeof path);
    progress_start(effect, "FaceRestore: analysing the shot");
    pthread_mutex_lock(&g_worker_lock);
    int result = worker_ready(err, sizeof err) == 0
                     ? stream_shot(effect, clip, range, path, written, sizeof written, summary, sizeof summary, err,
                                   sizeof err)
                     : -1;
    pthread_mutex_unlock(&g_worker_lock);
    progress_end(effect);
    if (result < 0) {
        report(effect, "Analyse shot: %s", err);
        return kOfxStatFailed;
    }
    if (result == 0) { /* cancelled: the node keeps what it had */
        fprintf(stderr, "FaceRestore: Analyse shot cancelled\n");
        return kOfxStatOK;
    }
    if (strcmp(written, path) != 0) set_string_param(effect, "analysis", written);
    /* The time makes the text new at every analysis, so the host re-renders even when the same
     * file is written again. */
    char status[1024], stamp[32];
    time_t now = time(NULL);
    strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", localtime(&now));
    snprintf(status, sizeof status, "Analysed %s: %s", stamp, summary);
    set_string_param(effect, FR_STATUS_ID, status);
    return kOfxStatOK;
}

static OfxStatus instance_changed(OfxImageEffectHandle effect, OfxPropertySetHandle in_args) {
    char *type = NULL, *name = NULL, *reason = NULL;
    g_props->propGetString(in_args, kOfxPropType, 0, &type);
    g_props->propGetString(in_args, kOfxPropName, 0, &name);
    g_props->propGetString(in_args, kOfxPropChangeReason, 0, &reason);
    if (!type || !name || strcmp(type, kOfxTypeParameter) != 0) return kOfxStatReplyDefault;
    /* Only a user's press: the spec allows fetching images in instanceChanged for user edits. */
    if (strcmp(name, FR_ANALYSE_ID) == 0 && reason && strcmp(reason, kOfxChangeUserEdited) == 0)
        return analyse_shot(effect);
    if (strcmp(name, "analysis") == 0 && reason && strcmp(reason, kOfxChangeUserEdited) == 0) {
        char path[4096], status[4200];
        string_param(effect, "analysis", path, sizeof path);
        if (path[0]) snprintf(status, sizeof status, "Analysis file set: %s", path);
        else snprintf(status, sizeof status, "%s", FR_STATUS_DEFAULT);
        set_string_param(effect, FR_STATUS_ID, status);
        return kOfxStatOK;
    }
    return kOfxStatReplyDefault;
}

/* A final render (the host renders to disk or in batch) rather than a viewer's: the render says
 * so (kOfxImageEffectPropInteractiveRenderStatus), else the host does (kOfxPropIsInteractive). */
static int is_final_render(OfxPropertySetHandle in_args) {
    int interactive = 1;
    if (g_props->propGetInt(in_args, kOfxImageEffectPropInteractiveRenderStatus, 0, &interactive) == kOfxStatOK)
        return !interactive;
    if (g_props->propGetInt(g_host->host, kOfxPropIsInteractive, 0, &interactive) == kOfxStatOK) return !interactive;
    return 0;
}

/* The node says whether its frames are previews: a persistent warning (message suite V2) while
 * they are, cleared once they are not. */
static void show_preview_state(OfxImageEffectHandle effect, int preview, const char *why) {
    InstanceState *state = instance_state(effect);
    if (!g_messages2 || !state) return;
    if (preview && state->preview_posted && strcmp(state->preview_why, why) == 0) return;
    if (preview) {
        char text[1024], format[2100];
        snprintf(state->preview_why, sizeof state->preview_why, "%s", why);
        snprintf(text, sizeof text,
                 "FaceRestore preview (%s): faces tracked over this frame's own window. Press Analyse shot for the "
                 "final result.",
                 why);
        as_format(text, format, sizeof format);
        g_messages2->setPersistentMessage(effect, kOfxMessageWarning, "FaceRestorePreview", format);
        state->preview_posted = 1;
    } else if (state->preview_posted) {
        g_messages2->clearPersistentMessage(effect);
        state->preview_posted = 0;
    }
}

static OfxStatus render(OfxImageEffectHandle effect, OfxPropertySetHandle in_args) {
    OfxTime time = 0;
    g_props->propGetDouble(in_args, kOfxPropTime, 0, &time);
    int final = is_final_render(in_args);
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
    /* Only the frames getFramesNeeded announced for this time. */
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
    char err[1024] = "", why[512] = "";
    int preview = 0;
    float *shared = make_segment(shm_name, sizeof shm_name, &shm_fd, total, frames, count, centre.bounds);
    if (!shared) {
        report(effect, "cannot allocate %zu bytes of shared memory: %s", total, strerror(errno));
        goto done;
    }

    pthread_mutex_lock(&g_worker_lock);
    if (worker_ready(err, sizeof err) != 0) {
        pthread_mutex_unlock(&g_worker_lock);
        report(effect, "%s", err);
        goto done;
    }
    OfxParamSetHandle param_set;
    g_effects->getParamSet(effect, &param_set);
    static char request[16384];
    long id = ++g_request_id;
    int k = snprintf(request, sizeof request,
                     "{\"id\":%ld,\"op\":\"render\",\"instance\":\"%p\",\"shm\":\"%s\",\"width\":%d,"
                     "\"height\":%d,\"centre\":%d,\"final\":%s,\"times\":[",
                     id, (void *)effect, shm_name + 1, width, height, centre_index, final ? "true" : "false");
    for (int f = 0; f < count; f++) k += snprintf(request + k, sizeof request - k, "%s%.17g", f ? "," : "", times[f]);
    k += snprintf(request + k, sizeof request - k, "],\"params\":{");
    append_param_json(request, sizeof request - 2, param_set, time, source_clip);
    strcat(request, "}\n");
    int got = ask_worker(effect, request, id, worker_timeout(), err, sizeof err);
    if (got == 0) { /* aborted by the host: its answer will be skipped */
        status = kOfxStatOK;
    } else if (got < 0) {
        stop_worker(); /* the next render starts a fresh one */
    } else {
        if (answer_ok(id, err, sizeof err)) {
            status = kOfxStatOK;
            const char *mode = json_value("mode");
            preview = mode && strncmp(mode, "\"preview\"", 9) == 0;
            answer_string("why", why, sizeof why);
        }
        consume_line();
    }
    pthread_mutex_unlock(&g_worker_lock);
    if (status != kOfxStatOK) {
        report(effect, "%s", err);
        goto done;
    }
    if (got == 1) {
        show_preview_state(effect, preview, why);
        const float *result = shared + (size_t)count * width * height * 4;
        OfxRectI window;
        g_props->propGetIntN(in_args, kOfxImageEffectPropRenderWindow, 4, &window.x1);
        /* Optional mask input (general context): limits where the change and the matte apply. */
        Image mask = {0};
        int has_mask = 0, output_mode = FR_OUTPUT_BOTH;
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
                if (output_mode == FR_OUTPUT_MASK) {
                    for (int c = 0; c < 4; c++) o[c] = r[c] * m;
                } else {
                    for (int c = 0; c < 3; c++) o[c] = src[c] + m * (r[c] - src[c]);
                    if (output_mode == FR_OUTPUT_BOTH) o[3] = r[3] * m;
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

static OfxStatus create_instance(OfxImageEffectHandle effect) {
    OfxPropertySetHandle props;
    InstanceState *state = calloc(1, sizeof *state);
    if (!state || g_effects->getPropertySet(effect, &props) != kOfxStatOK) {
        free(state);
        return kOfxStatFailed;
    }
    g_props->propSetPointer(props, kOfxPropInstanceData, 0, state);
    return kOfxStatOK;
}

static OfxStatus destroy_instance(OfxImageEffectHandle effect) {
    OfxPropertySetHandle props;
    free(instance_state(effect));
    if (g_effects->getPropertySet(effect, &props) == kOfxStatOK) g_props->propSetPointer(props, kOfxPropInstanceData, 0, NULL);
    return kOfxStatOK;
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
        g_messages2 = g_host->fetchSuite(g_host->host, kOfxMessageSuite, 2);
        g_progress2 = g_host->fetchSuite(g_host->host, kOfxProgressSuite, 2);
        if (!g_progress2) g_progress1 = g_host->fetchSuite(g_host->host, kOfxProgressSuite, 1);
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
    if (strcmp(action, kOfxActionCreateInstance) == 0) return create_instance(effect);
    if (strcmp(action, kOfxActionDestroyInstance) == 0) return destroy_instance(effect);
    if (strcmp(action, kOfxImageEffectActionGetClipPreferences) == 0) return get_clip_preferences(out_args);
    if (strcmp(action, kOfxImageEffectActionGetFramesNeeded) == 0) return get_frames_needed(effect, in_args, out_args);
    if (strcmp(action, kOfxImageEffectActionGetRegionsOfInterest) == 0)
        return get_regions_of_interest(effect, in_args, out_args);
    if (strcmp(action, kOfxActionInstanceChanged) == 0) return instance_changed(effect, in_args);
    if (strcmp(action, kOfxImageEffectActionRender) == 0) return render(effect, in_args);
    return kOfxStatReplyDefault;
}

static void set_host(OfxHost *host) { g_host = host; }

static OfxPlugin g_plugin = {kOfxImageEffectPluginApi, 1, FR_PLUGIN_ID, FR_SPEC_VERSION_MAJOR, FR_SPEC_VERSION_MINOR,
                             set_host, main_entry};

FR_OFX_EXPORT int OfxGetNumberOfPlugins(void) { return 1; }

FR_OFX_EXPORT OfxPlugin *OfxGetPlugin(int nth) { return nth == 0 ? &g_plugin : NULL; }
