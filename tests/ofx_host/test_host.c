/* A minimal OpenFX host for tests: no application can run here, so this stands in for one.
 * It loads a bundle, provides the property, image effect, parameter and message suites, and
 * runs load -> describe -> describeInContext -> createInstance -> getClipPreferences ->
 * getFramesNeeded -> render (N times) -> destroyInstance -> unload.
 *
 * test_host BUNDLE.ofx FRAMES_DIR WIDTH HEIGHT FIRST LAST TIME OUT.raw [--renders N] [--threads N]
 *           [--between 'shell command'] [--mask FILE] [--analyse] [--final] [name=value ...]
 * Frames are FRAMES_DIR/frame.<t>.raw: RGBA float32, rows top to bottom. --threads N renders from
 * N threads at once (as a host with instance-safe threading may), writing OUT.raw.<thread>;
 * --between runs a command between two renders. --analyse presses the node's Analyse shot button
 * (instanceChanged, a user edit) before rendering, with a progress suite that prints each update
 * and answers "cancel" once progress reaches $FACERESTORE_TEST_CANCEL_AT. --final renders as a
 * host's final render (kOfxImageEffectPropInteractiveRenderStatus 0; otherwise 1, a viewer's).
 * A strict host: each render asks getFramesNeeded first, and an image the plug-in asks for that
 * was not announced for that render (or outside render and a user's instanceChanged) is refused
 * and printed as "undeclared fetch". SIGPIPE keeps its default action, as in hosts that do not
 * ignore it. Exit 0 = rendered, 3 = a render failed cleanly (its message printed), 2 = the
 * plug-in could not be loaded. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ofx_decls.h"

enum { T_PTR, T_STR, T_DBL, T_INT };
typedef struct Prop {
    char name[128];
    int type, count;
    void *ptr[8];
    char *str[8];
    double dbl[8];
    int integer[8];
    struct Prop *next;
} Prop;
typedef struct OfxPropertySetStruct {
    Prop *props;
} PropSet;

static Prop *find(PropSet *set, const char *name, int type, int create) {
    for (Prop *p = set->props; p; p = p->next)
        if (strcmp(p->name, name) == 0) return p;
    if (!create) return NULL;
    Prop *p = calloc(1, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->type = type;
    p->next = set->props;
    set->props = p;
    return p;
}

#define SETTER(fn, ctype, field, tag, conv)                                                                   \
    static OfxStatus fn(OfxPropertySetHandle h, const char *name, int i, ctype v) {                           \
        if (!h || i < 0 || i >= 8) return kOfxStatErrBadIndex;                                                \
        Prop *p = find(h, name, tag, 1);                                                                      \
        p->field[i] = conv;                                                                                   \
        if (i + 1 > p->count) p->count = i + 1;                                                               \
        return kOfxStatOK;                                                                                    \
    }
SETTER(set_ptr, void *, ptr, T_PTR, v)
SETTER(set_str, const char *, str, T_STR, strdup(v))
SETTER(set_dbl, double, dbl, T_DBL, v)
SETTER(set_int, int, integer, T_INT, v)

#define GETTER(fn, ctype, field)                                                                              \
    static OfxStatus fn(OfxPropertySetHandle h, const char *name, int i, ctype *v) {                          \
        Prop *p = h ? find(h, name, 0, 0) : NULL;                                                             \
        if (!p) return kOfxStatErrUnknown;                                                                    \
        if (i < 0 || i >= p->count) return kOfxStatErrBadIndex;                                               \
        *v = p->field[i];                                                                                     \
        return kOfxStatOK;                                                                                    \
    }
GETTER(get_ptr, void *, ptr)
GETTER(get_str, char *, str)
GETTER(get_dbl, double, dbl)
GETTER(get_int, int, integer)

static OfxStatus set_ptr_n(OfxPropertySetHandle h, const char *n, int c, void *const *v) {
    for (int i = 0; i < c; i++) set_ptr(h, n, i, v[i]);
    return kOfxStatOK;
}
static OfxStatus set_str_n(OfxPropertySetHandle h, const char *n, int c, const char *const *v) {
    for (int i = 0; i < c; i++) set_str(h, n, i, v[i]);
    return kOfxStatOK;
}
static OfxStatus set_dbl_n(OfxPropertySetHandle h, const char *n, int c, const double *v) {
    for (int i = 0; i < c; i++) set_dbl(h, n, i, v[i]);
    return kOfxStatOK;
}
static OfxStatus set_int_n(OfxPropertySetHandle h, const char *n, int c, const int *v) {
    for (int i = 0; i < c; i++) set_int(h, n, i, v[i]);
    return kOfxStatOK;
}
static OfxStatus get_ptr_n(OfxPropertySetHandle h, const char *n, int c, void **v) {
    for (int i = 0; i < c; i++)
        if (get_ptr(h, n, i, &v[i])) return kOfxStatErrUnknown;
    return kOfxStatOK;
}
static OfxStatus get_str_n(OfxPropertySetHandle h, const char *n, int c, char **v) {
    for (int i = 0; i < c; i++)
        if (get_str(h, n, i, &v[i])) return kOfxStatErrUnknown;
    return kOfxStatOK;
}
static OfxStatus get_dbl_n(OfxPropertySetHandle h, const char *n, int c, double *v) {
    for (int i = 0; i < c; i++)
        if (get_dbl(h, n, i, &v[i])) return kOfxStatErrUnknown;
    return kOfxStatOK;
}
static OfxStatus get_int_n(OfxPropertySetHandle h, const char *n, int c, int *v) {
    for (int i = 0; i < c; i++)
        if (get_int(h, n, i, &v[i])) return kOfxStatErrUnknown;
    return kOfxStatOK;
}
static OfxStatus prop_reset(OfxPropertySetHandle h, const char *n) {
    (void)h, (void)n;
    return kOfxStatOK;
}
static OfxStatus prop_dimension(OfxPropertySetHandle h, const char *n, int *c) {
    Prop *p = find(h, n, 0, 0);
    if (!p) return kOfxStatErrUnknown;
    *c = p->count;
    return kOfxStatOK;
}
static const OfxPropertySuiteV1 PROPERTY_SUITE = {set_ptr,   set_str,   set_dbl,   set_int,    set_ptr_n,
                                                  set_str_n, set_dbl_n, set_int_n, get_ptr,    get_str,
                                                  get_dbl,   get_int,   get_ptr_n, get_str_n,  get_dbl_n,
                                                  get_int_n, prop_reset, prop_dimension};

/* ---- objects ---- */
typedef struct OfxParamStruct {
    char name[64], type[64];
    PropSet props;
    char override[512];
    int has_override;
} Param;
typedef struct OfxParamSetStruct {
    Param params[64];
    int count;
    PropSet props;
} ParamSet;
typedef struct OfxImageClipStruct {
    char name[64];
    PropSet props;
} Clip;
typedef struct OfxImageEffectStruct {
    PropSet props;
    ParamSet params;
    Clip clips[4];
    int n_clips;
} Effect;

static const char *g_frames_dir;
static const char *g_mask_path; /* --mask FILE: float alpha, rows top to bottom */
static int g_width, g_height;
static double g_first, g_last;
static __thread char g_last_message[4096];
/* What this thread's current action lets the plug-in fetch from the Source clip. */
enum { FETCH_NONE, FETCH_RENDER, FETCH_USER_EDIT };
static __thread int g_fetch_context = FETCH_NONE;
static __thread double g_declared[2]; /* frames announced for the render in progress */

static OfxStatus effect_props(OfxImageEffectHandle e, OfxPropertySetHandle *p) {
    *p = &e->props;
    return kOfxStatOK;
}
static OfxStatus effect_params(OfxImageEffectHandle e, OfxParamSetHandle *p) {
    *p = &e->params;
    return kOfxStatOK;
}
static OfxStatus clip_define(OfxImageEffectHandle e, const char *name, OfxPropertySetHandle *p) {
    Clip *c = &e->clips[e->n_clips++];
    snprintf(c->name, sizeof c->name, "%s", name);
    *p = &c->props;
    return kOfxStatOK;
}
static OfxStatus clip_handle(OfxImageEffectHandle e, const char *name, OfxImageClipHandle *clip, OfxPropertySetHandle *p) {
    for (int i = 0; i < e->n_clips; i++)
        if (strcmp(e->clips[i].name, name) == 0) {
            *clip = &e->clips[i];
            if (p) *p = &e->clips[i].props;
            return kOfxStatOK;
        }
    return kOfxStatErrUnknown;
}
static OfxStatus clip_props(OfxImageClipHandle c, OfxPropertySetHandle *p) {
    *p = &c->props;
    return kOfxStatOK;
}
static __thread float *g_output; /* the output image, kept after release for writing out */

/* Read a raw float image stored top to bottom into `data` bottom to top, as OFX lays rows out. */
static int read_flipped(const char *path, int channels, float *data) {
    size_t row = (size_t)g_width * channels, n = row * g_height;
    FILE *f = path ? fopen(path, "rb") : NULL;
    float *top_down = malloc(n * sizeof(float));
    int ok = f && fread(top_down, sizeof(float), n, f) == n;
    if (f) fclose(f);
    for (int y = 0; ok && y < g_height; y++)
        memcpy(data + (size_t)(g_height - 1 - y) * row, top_down + (size_t)y * row, row * sizeof(float));
    free(top_down);
    return ok ? 0 : -1;
}

static OfxStatus clip_image(OfxImageClipHandle clip, OfxTime t, const OfxRectD *region, OfxPropertySetHandle *out) {
    size_t n = (size_t)g_width * g_height * 4;
    float *data = calloc(n, sizeof(float));
    int channels = 4;
    if (strcmp(clip->name, "Output") == 0) {
        g_output = data;
    } else if (strcmp(clip->name, "Mask") == 0) {
        channels = 1;
        if (read_flipped(g_mask_path, channels, data)) {
            free(data);
            return kOfxStatFailed;
        }
    } else {
        int declared = g_fetch_context == FETCH_USER_EDIT ||
                       (g_fetch_context == FETCH_RENDER && t >= g_declared[0] && t <= g_declared[1]);
        if (!declared || (g_fetch_context == FETCH_USER_EDIT && !region)) {
            printf("undeclared fetch: %s at %g (%s)\n", clip->name, t,
                   g_fetch_context == FETCH_RENDER ? "not announced by getFramesNeeded"
                   : g_fetch_context == FETCH_USER_EDIT ? "no region outside a render"
                                                        : "outside render and instanceChanged");
            fflush(stdout);
            free(data);
            return kOfxStatFailed;
        }
        if (getenv("FACERESTORE_TEST_HOLD_FRAMES")) /* as hosts that hold the first and last frames */
            t = t < g_first ? g_first : (t > g_last ? g_last : t);
        if (t < g_first || t > g_last) {
            free(data);
            return kOfxStatFailed;
        }
        char path[1024];
        snprintf(path, sizeof path, "%s/frame.%d.raw", g_frames_dir, (int)t);
        if (read_flipped(path, channels, data)) {
            free(data);
            return kOfxStatFailed;
        }
    }
    PropSet *image = calloc(1, sizeof *image);
    set_ptr(image, kOfxImagePropData, 0, data);
    int bounds[4] = {0, 0, g_width, g_height};
    set_int_n(image, kOfxImagePropBounds, 4, bounds);
    set_int(image, kOfxImagePropRowBytes, 0, g_width * channels * (int)sizeof(float));
    set_str(image, kOfxImageEffectPropComponents, 0, channels == 4 ? kOfxImageComponentRGBA : kOfxImageComponentAlpha);
    set_str(image, kOfxImageEffectPropPixelDepth, 0, kOfxBitDepthFloat);
    *out = image;
    return kOfxStatOK;
}
static OfxStatus clip_release(OfxPropertySetHandle image) {
    void *data = NULL;
    get_ptr(image, kOfxImagePropData, 0, &data);
    if (data != g_output) free(data);
    return kOfxStatOK;
}
static OfxStatus clip_rod(OfxImageClipHandle c, OfxTime t, OfxRectD *b) {
    (void)c, (void)t;
    *b = (OfxRectD){0, 0, g_width, g_height};
    return kOfxStatOK;
}
static int effect_abort(OfxImageEffectHandle e) {
    (void)e;
    return 0;
}
static OfxStatus mem_alloc(OfxImageEffectHandle e, size_t n, OfxImageMemoryHandle *m) {
    (void)e, (void)n, (void)m;
    return kOfxStatErrUnsupported;
}
static OfxStatus mem_handle(OfxImageMemoryHandle m) {
    (void)m;
    return kOfxStatErrUnsupported;
}
static OfxStatus mem_lock(OfxImageMemoryHandle m, void **p) {
    (void)m, (void)p;
    return kOfxStatErrUnsupported;
}
static const OfxImageEffectSuiteV1 EFFECT_SUITE = {effect_props, effect_params, clip_define, clip_handle,
                                                   clip_props,   clip_image,    clip_release, clip_rod,
                                                   effect_abort, mem_alloc,     mem_handle,   mem_lock,
                                                   mem_handle};

static OfxStatus param_define(OfxParamSetHandle s, const char *type, const char *name, OfxPropertySetHandle *p) {
    Param *param = &s->params[s->count++];
    snprintf(param->name, sizeof param->name, "%s", name);
    snprintf(param->type, sizeof param->type, "%s", type);
    if (p) *p = &param->props;
    return kOfxStatOK;
}
static OfxStatus param_handle(OfxParamSetHandle s, const char *name, OfxParamHandle *h, OfxPropertySetHandle *p) {
    for (int i = 0; i < s->count; i++)
        if (strcmp(s->params[i].name, name) == 0) {
            *h = &s->params[i];
            if (p) *p = &s->params[i].props;
            return kOfxStatOK;
        }
    return kOfxStatErrUnknown;
}
static OfxStatus paramset_props(OfxParamSetHandle s, OfxPropertySetHandle *p) {
    *p = &s->props;
    return kOfxStatOK;
}
static OfxStatus param_props(OfxParamHandle h, OfxPropertySetHandle *p) {
    *p = &h->props;
    return kOfxStatOK;
}
static OfxStatus param_value(Param *h, va_list args) {
    if (strcmp(h->type, kOfxParamTypeDouble) == 0) {
        double *v = va_arg(args, double *);
        if (h->has_override) *v = atof(h->override);
        else get_dbl(&h->props, kOfxParamPropDefault, 0, v);
    } else if (strcmp(h->type, kOfxParamTypeString) == 0) {
        char **v = va_arg(args, char **);
        if (h->has_override) *v = h->override;
        else get_str(&h->props, kOfxParamPropDefault, 0, v);
    } else if (strcmp(h->type, kOfxParamTypeChoice) == 0 && h->has_override) {
        int *v = va_arg(args, int *);
        *v = 0;
        for (int i = 0;; i++) {
            char *option = NULL;
            if (get_str(&h->props, kOfxParamPropChoiceOption, i, &option)) break;
            if (strcmp(option, h->override) == 0) *v = i;
        }
    } else {
        int *v = va_arg(args, int *);
        if (h->has_override) *v = atoi(h->override);
        else get_int(&h->props, kOfxParamPropDefault, 0, v);
    }
    return kOfxStatOK;
}
static OfxStatus param_get(OfxParamHandle h, ...) {
    va_list args;
    va_start(args, h);
    OfxStatus s = param_value(h, args);
    va_end(args);
    return s;
}
static OfxStatus param_get_at(OfxParamHandle h, OfxTime t, ...) {
    (void)t;
    va_list args;
    va_start(args, t);
    OfxStatus s = param_value(h, args);
    va_end(args);
    return s;
}
/* The plug-in sets string parameters only (the Analysis file and the Status line). */
static OfxStatus param_set(OfxParamHandle h, ...) {
    if (strcmp(h->type, kOfxParamTypeString) != 0) return kOfxStatErrUnsupported;
    va_list args;
    va_start(args, h);
    const char *value = va_arg(args, const char *);
    va_end(args);
    snprintf(h->override, sizeof h->override, "%s", value);
    h->has_override = 1;
    printf("set %s = %s\n", h->name, value);
    return kOfxStatOK;
}
/* Entries the plug-in never calls stay NULL: a call would crash this test host, loudly. */
static const OfxParameterSuiteV1 PARAM_SUITE = {param_define, param_handle, paramset_props, param_props, param_get,
                                                param_get_at, NULL,         NULL,           param_set};

static OfxStatus message(void *handle, const char *type, const char *id, const char *format, ...) {
    (void)handle, (void)id;
    va_list args;
    va_start(args, format);
    vsnprintf(g_last_message, sizeof g_last_message, format, args);
    va_end(args);
    printf("message %s: %s\n", type, g_last_message);
    return kOfxStatOK;
}
static const OfxMessageSuiteV1 MESSAGE_SUITE = {message};
static OfxStatus persistent_message(void *handle, const char *type, const char *id, const char *format, ...) {
    (void)handle, (void)id;
    char text[4096];
    va_list args;
    va_start(args, format);
    vsnprintf(text, sizeof text, format, args);
    va_end(args);
    printf("persistent %s: %s\n", type, text);
    return kOfxStatOK;
}
static OfxStatus clear_persistent_message(void *handle) {
    (void)handle;
    printf("persistent cleared\n");
    return kOfxStatOK;
}
static const OfxMessageSuiteV2 MESSAGE_SUITE_V2 = {message, persistent_message, clear_persistent_message};

/* A progress bar that prints, and whose user presses cancel at $FACERESTORE_TEST_CANCEL_AT. */
static int g_progress_running;
static OfxStatus progress_start(void *effect, const char *label) {
    (void)effect;
    if (g_progress_running) printf("progress started twice\n");
    g_progress_running = 1;
    printf("progress start %s\n", label);
    return kOfxStatOK;
}
static OfxStatus progress_update(void *effect, double done) {
    (void)effect;
    const char *cancel_at = getenv("FACERESTORE_TEST_CANCEL_AT");
    printf("progress %.3f\n", done);
    fflush(stdout);
    if (!g_progress_running) printf("progress update outside start/end\n");
    if (cancel_at && done >= atof(cancel_at)) {
        printf("progress cancelled\n");
        return kOfxStatReplyNo;
    }
    return kOfxStatOK;
}
static OfxStatus progress_end(void *effect) {
    (void)effect;
    g_progress_running = 0;
    printf("progress end\n");
    return kOfxStatOK;
}
static const OfxProgressSuiteV1 PROGRESS_SUITE = {progress_start, progress_update, progress_end};

static PropSet g_host_props; /* kOfxPropIsInteractive: 1, set in main */
static const void *fetch_suite(OfxPropertySetHandle host, const char *name, int version) {
    (void)host;
    if (!strcmp(name, kOfxMessageSuite) && version == 2) return &MESSAGE_SUITE_V2;
    if (version != 1) return NULL;
    if (!strcmp(name, kOfxProgressSuite)) return &PROGRESS_SUITE;
    if (!strcmp(name, kOfxPropertySuite)) return &PROPERTY_SUITE;
    if (!strcmp(name, kOfxImageEffectSuite)) return &EFFECT_SUITE;
    if (!strcmp(name, kOfxParameterSuite)) return &PARAM_SUITE;
    if (!strcmp(name, kOfxMessageSuite)) return &MESSAGE_SUITE;
    return NULL;
}
static OfxHost HOST = {&g_host_props, fetch_suite};

typedef struct {
    OfxPlugin *plugin;
    Effect *instance;
    double time;
    int renders;
    const char *between; /* shell command run between two renders */
    char out_path[1024];
    int failed;
    int sequence; /* render every frame of the clip in order, each to OUT.<frame> */
    int final;    /* a final render, not a viewer's */
} RenderJob;

static pthread_mutex_t g_print_lock = PTHREAD_MUTEX_INITIALIZER;

static void *render_job(void *arg) {
    RenderJob *job = arg;
    for (int r = 0; r < job->renders; r++) {
        if (r > 0 && job->between && system(job->between) != 0) printf("between-renders command failed\n");
        PropSet render_args = {0};
        double time = job->sequence ? g_first + r : job->time;
        set_dbl(&render_args, kOfxPropTime, 0, time);
        int window[4] = {0, 0, g_width, g_height};
        set_int_n(&render_args, kOfxImageEffectPropRenderWindow, 4, window);
        set_int(&render_args, kOfxImageEffectPropInteractiveRenderStatus, 0, !job->final);
        /* As hosts do: the frames this render may fetch are the ones announced for its time. */
        PropSet needed_args = {0}, needed = {0};
        set_dbl(&needed_args, kOfxPropTime, 0, time);
        g_declared[0] = g_declared[1] = time;
        if (job->plugin->mainEntry(kOfxImageEffectActionGetFramesNeeded, job->instance, &needed_args, &needed) ==
            kOfxStatOK)
            get_dbl_n(&needed, "OfxImageClipPropFrameRange_Source", 2, g_declared);
        g_last_message[0] = 0;
        g_fetch_context = FETCH_RENDER;
        OfxStatus status = job->plugin->mainEntry(kOfxImageEffectActionRender, job->instance, &render_args, NULL);
        g_fetch_context = FETCH_NONE;
        pthread_mutex_lock(&g_print_lock);
        printf("render %d status %d\n", r + 1, status);
        if (status != kOfxStatOK) printf("render failed: %s\n", g_last_message);
        fflush(stdout);
        pthread_mutex_unlock(&g_print_lock);
        if (status != kOfxStatOK) {
            job->failed = 1;
            continue;
        }
        job->failed = 0;
        char path[1100];
        if (job->sequence)
            snprintf(path, sizeof path, "%s.%d", job->out_path, (int)time);
        else
            snprintf(path, sizeof path, "%s", job->out_path);
        FILE *f = fopen(path, "wb");
        for (int row = 0; row < g_height; row++) /* write top to bottom */
            fwrite(g_output + (size_t)(g_height - 1 - row) * g_width * 4, sizeof(float), (size_t)g_width * 4, f);
        fclose(f);
        free(g_output);
        g_output = NULL;
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 9) {
        fprintf(stderr, "usage: test_host BUNDLE FRAMES_DIR W H FIRST LAST TIME OUT [--renders N] [name=value...]\n");
        return 64;
    }
    g_frames_dir = argv[2];
    g_width = atoi(argv[3]);
    g_height = atoi(argv[4]);
    g_first = atof(argv[5]);
    g_last = atof(argv[6]);
    double time = atof(argv[7]);
    const char *out_path = argv[8];
    int renders = 1, threads = 1, sequence = 0, analyse = 0, final = 0;
    const char *between = NULL;

    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        printf("cannot load: %s\n", dlerror());
        return 2;
    }
    int (*count)(void) = (int (*)(void))dlsym(lib, "OfxGetNumberOfPlugins");
    OfxPlugin *(*get)(int) = (OfxPlugin * (*)(int)) dlsym(lib, "OfxGetPlugin");
    if (!count || !get || count() < 1) {
        printf("no OpenFX plug-ins in %s\n", argv[1]);
        return 2;
    }
    OfxPlugin *plugin = get(0);
    printf("plugin %s %s %u.%u\n", plugin->pluginApi, plugin->pluginIdentifier, plugin->pluginVersionMajor,
           plugin->pluginVersionMinor);
    set_int(&g_host_props, kOfxPropIsInteractive, 0, 1);
    plugin->setHost(&HOST);
    if (plugin->mainEntry(kOfxActionLoad, NULL, NULL, NULL) != kOfxStatOK) return 2;
    Effect *descriptor = calloc(1, sizeof *descriptor);
    if (plugin->mainEntry(kOfxActionDescribe, descriptor, NULL, NULL) != kOfxStatOK) return 2;
    for (int i = 0;; i++) {
        char *context;
        if (get_str(&descriptor->props, kOfxImageEffectPropSupportedContexts, i, &context)) break;
        printf("context %s\n", context);
    }
    char *label = "";
    get_str(&descriptor->props, kOfxPropLabel, 0, &label);
    printf("label %s\n", label);

    Effect *instance = calloc(1, sizeof *instance);
    PropSet in_args = {0}, out_args = {0};
    for (int a = 9; a < argc; a++)
        if (!strcmp(argv[a], "--mask") && a + 1 < argc) g_mask_path = argv[a + 1];
    /* With a mask, the general context (which has the Mask input); the filter context otherwise. */
    set_str(&in_args, kOfxImageEffectPropContext, 0,
            g_mask_path ? kOfxImageEffectContextGeneral : kOfxImageEffectContextFilter);
    if (plugin->mainEntry(kOfxImageEffectActionDescribeInContext, instance, &in_args, NULL) != kOfxStatOK) return 2;
    for (int i = 0; i < instance->params.count; i++) {
        Param *p = &instance->params.params[i];
        printf("param %s %s\n", p->name, p->type);
        /* What the plug-in declared, for the test that compares it with the node spec. */
        char *text = "";
        get_str(&p->props, kOfxPropLabel, 0, &text);
        printf("paramdef %s label=%s", p->name, text);
        if (!strcmp(p->type, kOfxParamTypeDouble)) {
            double def = 0, lo = 0, hi = 0, step = 1; /* 1 and 2: what a host assumes when none is set */
            int digits = 2;
            get_dbl(&p->props, kOfxParamPropDefault, 0, &def);
            get_dbl(&p->props, kOfxParamPropMin, 0, &lo);
            get_dbl(&p->props, kOfxParamPropMax, 0, &hi);
            get_dbl(&p->props, kOfxParamPropIncrement, 0, &step);
            get_int(&p->props, kOfxParamPropDigits, 0, &digits);
            printf(" step=%.17g digits=%d default=%.17g min=%.17g max=%.17g", step, digits, def, lo, hi);
        } else if (!strcmp(p->type, kOfxParamTypeInteger) || !strcmp(p->type, kOfxParamTypeChoice)) {
            int def = 0, lo = 0, hi = 0;
            get_int(&p->props, kOfxParamPropDefault, 0, &def);
            printf(" default=%d", def);
            if (!get_int(&p->props, kOfxParamPropMin, 0, &lo) && !get_int(&p->props, kOfxParamPropMax, 0, &hi))
                printf(" min=%d max=%d", lo, hi);
        } else if (!get_str(&p->props, kOfxParamPropDefault, 0, &text)) {
            printf(" default=%s", text);
        }
        for (int k = 0; !get_str(&p->props, kOfxParamPropChoiceOption, k, &text); k++) printf(" option=%s", text);
        printf("\n");
    }
    for (int i = 0; i < instance->n_clips; i++) printf("clip %s\n", instance->clips[i].name);
    for (int a = 9; a < argc; a++) {
        if (!strcmp(argv[a], "--renders") && a + 1 < argc) {
            renders = atoi(argv[++a]);
            continue;
        }
        if (!strcmp(argv[a], "--sequence")) {
            sequence = 1;
            continue;
        }
        if (!strcmp(argv[a], "--analyse")) {
            analyse = 1;
            continue;
        }
        if (!strcmp(argv[a], "--final")) {
            final = 1;
            continue;
        }
        if (!strcmp(argv[a], "--threads") && a + 1 < argc) {
            threads = atoi(argv[++a]);
            continue;
        }
        if (!strcmp(argv[a], "--between") && a + 1 < argc) {
            between = argv[++a];
            continue;
        }
        if (!strcmp(argv[a], "--mask") && a + 1 < argc) {
            a++;
            continue;
        }
        char *eq = strchr(argv[a], '=');
        if (!eq) continue;
        *eq = 0;
        OfxParamHandle h;
        if (param_handle(&instance->params, argv[a], &h, NULL) != kOfxStatOK) {
            printf("unknown parameter %s\n", argv[a]);
            return 64;
        }
        snprintf(h->override, sizeof h->override, "%s", eq + 1);
        h->has_override = 1;
    }
    double clip_range[2] = {g_first, g_last};
    for (int i = 0; i < instance->n_clips; i++) {
        set_int(&instance->clips[i].props, kOfxImageClipPropConnected, 0,
                strcmp(instance->clips[i].name, "Mask") != 0 || g_mask_path != NULL);
        if (!getenv("FACERESTORE_TEST_NO_FRAME_RANGE")) /* hosts that do not say: per-window renders */
            set_dbl_n(&instance->clips[i].props, kOfxImageEffectPropFrameRange, 2, clip_range);
        if (getenv("FACERESTORE_TEST_PIXEL_ASPECT")) /* an anamorphic clip, as the host says */
            set_dbl(&instance->clips[i].props, kOfxImagePropPixelAspectRatio, 0,
                    atof(getenv("FACERESTORE_TEST_PIXEL_ASPECT")));
    }
    if (plugin->mainEntry(kOfxActionCreateInstance, instance, NULL, NULL) != kOfxStatOK) return 2;
    PropSet prefs = {0};
    plugin->mainEntry(kOfxImageEffectActionGetClipPreferences, instance, NULL, &prefs);
    char *components = "";
    get_str(&prefs, "OfxImageClipPropComponents_Output", 0, &components);
    printf("output components %s\n", components);
    set_dbl(&in_args, kOfxPropTime, 0, time);
    plugin->mainEntry(kOfxImageEffectActionGetFramesNeeded, instance, &in_args, &out_args);
    double range[2] = {0, 0};
    get_dbl_n(&out_args, "OfxImageClipPropFrameRange_Source", 2, range);
    printf("frames needed %g %g\n", range[0], range[1]);
    PropSet roi_args = {0}, rois = {0};
    set_dbl(&roi_args, kOfxPropTime, 0, time);
    double roi[4] = {0};
    if (plugin->mainEntry(kOfxImageEffectActionGetRegionsOfInterest, instance, &roi_args, &rois) == kOfxStatOK &&
        !get_dbl_n(&rois, "OfxImageClipPropRoI_Source", 4, roi))
        printf("region of interest %g %g %g %g\n", roi[0], roi[1], roi[2], roi[3]);
    if (analyse) { /* the user presses Analyse shot */
        PropSet changed = {0};
        set_str(&changed, kOfxPropType, 0, kOfxTypeParameter);
        set_str(&changed, kOfxPropName, 0, "analyse_shot");
        set_str(&changed, kOfxPropChangeReason, 0, kOfxChangeUserEdited);
        set_dbl(&changed, kOfxPropTime, 0, time);
        g_fetch_context = FETCH_USER_EDIT;
        OfxStatus status = plugin->mainEntry(kOfxActionInstanceChanged, instance, &changed, NULL);
        g_fetch_context = FETCH_NONE;
        printf("analyse status %d\n", status);
        if (status != kOfxStatOK) printf("analyse failed: %s\n", g_last_message);
    }
    for (int i = 0; i < instance->params.count; i++) { /* what the node shows after it */
        Param *p = &instance->params.params[i];
        if (strcmp(p->name, "analysis_status") && strcmp(p->name, "analysis")) continue;
        char *value = NULL;
        param_get(p, &value);
        printf("value %s = %s\n", p->name, value ? value : "");
    }

    fflush(stdout);
    if (threads < 1 || threads > 16) threads = 1;
    RenderJob jobs[16];
    pthread_t ids[16];
    for (int i = 0; i < threads; i++) {
        jobs[i] = (RenderJob){plugin, instance, time, sequence ? (int)(g_last - g_first) + 1 : renders, between, "", 0,
                              sequence, final};
        if (threads == 1)
            snprintf(jobs[i].out_path, sizeof jobs[i].out_path, "%s", out_path);
        else
            snprintf(jobs[i].out_path, sizeof jobs[i].out_path, "%s.%d", out_path, i);
        pthread_create(&ids[i], NULL, render_job, &jobs[i]);
    }
    int failed = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(ids[i], NULL);
        failed |= jobs[i].failed;
    }
    plugin->mainEntry(kOfxActionDestroyInstance, instance, NULL, NULL);
    plugin->mainEntry(kOfxActionUnload, NULL, NULL, NULL);
    dlclose(lib);
    printf("done\n");
    return failed ? 3 : 0;
}
