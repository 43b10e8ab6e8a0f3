/*
 * nvml_sim.c - a simulated libnvidia-ml.so.1 for machines without a GPU.
 *
 * The unmodified pynvml (nvidia-ml-py) drives this library through ctypes, so
 * every ctypes mistake a probe makes (wrong argument types, wrong struct
 * layouts, the P2P tuple pitfall) fails here exactly as it would on a node.
 *
 * What the simulated node looks like comes from a *resolved* scenario file
 * (gpubox/sim/scenario.py writes it; layout in gpubox/sim/SCENARIOS.md), path
 * in $GPUBOX_SIM_SCENARIO (default /etc/gpubox-sim/scenario.json). It is read
 * once per nvmlInit (the first of a ref-counted series).
 *
 * Setters (locked clocks, persistence mode) write small files under
 * $GPUBOX_SIM_STATE_DIR (default /run/gpubox-sim), so a lock set by one
 * process is seen by later ones and disappears at a reboot, like the real
 * thing (/run is a tmpfs).
 *
 * Build: cc -shared -fPIC -O2 -Wall -Werror -o libnvidia-ml.so.1 nvml_sim.c
 * No dependencies beyond libc; the JSON reader below is our own.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <signal.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

/* ---- NVML ABI: return codes, enums and structs exactly as nvml.h has them ---- */
typedef int nvmlReturn_t;
enum {
    NVML_SUCCESS = 0, NVML_ERROR_UNINITIALIZED = 1, NVML_ERROR_INVALID_ARGUMENT = 2,
    NVML_ERROR_NOT_SUPPORTED = 3, NVML_ERROR_NO_PERMISSION = 4, NVML_ERROR_NOT_FOUND = 6,
    NVML_ERROR_INSUFFICIENT_SIZE = 7, NVML_ERROR_DRIVER_NOT_LOADED = 9, NVML_ERROR_TIMEOUT = 10,
    NVML_ERROR_GPU_IS_LOST = 15, NVML_ERROR_MEMORY = 20, NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25,
    NVML_ERROR_UNKNOWN = 999,
};
enum { CLOCK_GRAPHICS = 0, CLOCK_SM = 1, CLOCK_MEM = 2, CLOCK_VIDEO = 3 };
#define EVENT_XID 0x8ULL /* nvmlEventTypeXidCriticalError */
/* The event types a GPU reports as supported: the mask driver 580.159.04 answered on a real
 * H100 (0xFF9F, measured with scripts/real-gpu-check.sh); the simulator delivers only XIDs. */
#define EVENT_SUPPORTED 0xFF9FULL
#define FI_DEV_MEMORY_TEMP 82
#define VALUE_TYPE_UNSIGNED_INT 1
#define CLOCK_LIMIT_ID_TDP 0xffffff01u /* accepted as "max" by SetGpuLockedClocks */
#define CLOCK_LIMIT_ID_UNLIMITED 0xffffff02u
#define MEMORY_V2_VERSION ((unsigned)(sizeof(nvmlMemory_v2_t) | (2u << 24)))

typedef struct sim_gpu *nvmlDevice_t;
typedef struct sim_evset *nvmlEventSet_t;

typedef struct { /* v1: what the unversioned nvmlDeviceGetPciInfo fills, 52 bytes */
    char busId[16];
    unsigned domain, bus, device, pciDeviceId, pciSubSystemId, reserved[4];
} nvmlPciInfo_v1_t;
typedef struct { /* v2 and v3, 68 bytes */
    char busIdLegacy[16];
    unsigned domain, bus, device, pciDeviceId, pciSubSystemId;
    char busId[32];
} nvmlPciInfo_t;
typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
typedef struct { unsigned version; unsigned long long total, reserved, free, used; } nvmlMemory_v2_t;
typedef struct { unsigned gpu, memory; } nvmlUtilization_t;
typedef struct {
    unsigned fieldId, scopeId;
    long long timestamp, latencyUsec;
    int valueType;
    nvmlReturn_t nvmlReturn;
    union { double d; unsigned ui; unsigned long ul; unsigned long long ull; long long sll; int si; } value;
} nvmlFieldValue_t;
typedef struct {
    nvmlDevice_t device;
    unsigned long long eventType, eventData;
    unsigned gpuInstanceId, computeInstanceId; /* absent from the legacy (v1) struct */
} nvmlEventData_t;

_Static_assert(sizeof(nvmlPciInfo_v1_t) == 52, "nvmlPciInfo v1 layout");
_Static_assert(sizeof(nvmlPciInfo_t) == 68, "nvmlPciInfo_t layout");
_Static_assert(sizeof(nvmlMemory_v2_t) == 40, "nvmlMemory_v2_t layout");
_Static_assert(sizeof(nvmlFieldValue_t) == 40, "nvmlFieldValue_t layout");
_Static_assert(sizeof(nvmlEventData_t) == 32, "nvmlEventData_t layout");

/* ---- The simulated node ---- */
#define MAX_GPUS 16
#define MAX_CLOCKS 128
#define MAX_LINKS 36
#define MAX_XIDS 32
#define N_CAPS 5 /* READ, WRITE, NVLINK, ATOMICS, PROP */
#define MAX_BURN 32

/* One point of a GPU's burn timeline: what it reads at fraction "at" of a gpu-burn run. */
struct burn_point {
    double at;
    unsigned sm, temp, mem_temp, power_mw; /* sm 0: the locked clock, else the max clock */
    unsigned long long reasons;
};

struct sim_gpu {
    unsigned index, domain, bus, dev, fn, pci_device_id, pci_subsystem_id;
    char name[96], uuid[96], serial[32], bus_id[32];
    unsigned long long mem_total, mem_reserved, mem_used; /* bytes */
    unsigned gen_cur, gen_max, width_cur, width_max, replays;
    unsigned gfx_idle, mem_clk, video_idle, max_gfx, max_mem, max_video;
    unsigned n_gfx, gfx[MAX_CLOCKS], n_memc, memc[MAX_CLOCKS];
    int honours_lock;
    unsigned long long reasons_unlocked, reasons_locked;
    unsigned temp, mem_temp, power_mw, power_limit_mw, util_gpu, util_mem, pstate;
    int has_power_limit, persistence, ecc_enabled, lost, nvlink_supported;
    unsigned long long ecc[2][2]; /* [corrected/uncorrected][volatile/aggregate] */
    unsigned rr_corr, rr_unc;
    int rr_pending, rr_failure;
    unsigned n_links, n_xids, xids[MAX_XIDS];
    int link_active[MAX_LINKS];
    unsigned n_burn;
    struct burn_point burn[MAX_BURN];
};

static struct {
    int refs; /* nvmlInit/nvmlShutdown are ref-counted, like NVML */
    unsigned n, cuda;
    struct sim_gpu gpu[MAX_GPUS];
    unsigned char p2p[N_CAPS][MAX_GPUS][MAX_GPUS];
    char driver[80], nvml[80], state_dir[1024];
} sim;
static pthread_mutex_t sim_lock = PTHREAD_MUTEX_INITIALIZER;

/* ---- A tiny JSON reader: enough for the resolved scenario, nothing more ---- */
enum { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };
typedef struct jv {
    int type, len;          /* len: number of children (array/object) */
    double num;             /* J_NUM, J_BOOL */
    char *str, *key;        /* J_STR value; member name inside an object */
    struct jv *kid, *next;  /* first child, next sibling */
} jv;
typedef struct { const char *s, *p; char err[200]; } jparser;

static void jfree(jv *v) {
    while (v) {
        jv *next = v->next;
        jfree(v->kid);
        free(v->str);
        free(v->key);
        free(v);
        v = next;
    }
}
static void jskip(jparser *P) {
    while (*P->p == ' ' || *P->p == '\t' || *P->p == '\n' || *P->p == '\r') P->p++;
}
static jv *jfail(jparser *P, const char *what) {
    if (!P->err[0]) {
        int line = 1;
        for (const char *c = P->s; c < P->p; c++) line += *c == '\n';
        snprintf(P->err, sizeof P->err, "%s at line %d", what, line);
    }
    return NULL;
}
static char *jstring(jparser *P) { /* P->p is on the opening quote */
    size_t cap = 32, n = 0;
    char *out = malloc(cap), *grown;
    for (P->p++; out && *P->p != '"'; P->p++) {
        unsigned c = (unsigned char)*P->p, escaped_unicode = 0;
        if (c < 0x20) { free(out); jfail(P, "unterminated string"); return NULL; }
        if (c == '\\') {
            switch (c = (unsigned char)*++P->p) {
            case '"': case '\\': case '/': break;
            case 'b': c = '\b'; break;
            case 'f': c = '\f'; break;
            case 'n': c = '\n'; break;
            case 'r': c = '\r'; break;
            case 't': c = '\t'; break;
            case 'u': { /* \uXXXX, BMP only, stored as UTF-8 */
                char hex[5] = {0}, *end;
                memcpy(hex, P->p + 1, strnlen(P->p + 1, 4));
                c = (unsigned)strtoul(hex, &end, 16);
                if (end != hex + 4) { free(out); jfail(P, "bad \\u escape"); return NULL; }
                P->p += 4;
                escaped_unicode = 1;
                break;
            }
            default: free(out); jfail(P, "bad escape in string"); return NULL;
            }
        }
        if (n + 4 >= cap) {
            if (!(grown = realloc(out, cap *= 2))) { free(out); out = NULL; break; }
            out = grown;
        }
        if (c < 0x80 || !escaped_unicode) out[n++] = (char)c; /* raw UTF-8 bytes pass through */
        else if (c < 0x800) { out[n++] = (char)(0xC0 | c >> 6); out[n++] = (char)(0x80 | (c & 0x3F)); }
        else {
            out[n++] = (char)(0xE0 | c >> 12);
            out[n++] = (char)(0x80 | ((c >> 6) & 0x3F));
            out[n++] = (char)(0x80 | (c & 0x3F));
        }
    }
    if (!out) { jfail(P, "out of memory"); return NULL; }
    out[n] = 0;
    P->p++;
    return out;
}
static jv *jvalue(jparser *P, int depth) {
    jskip(P);
    if (depth > 32) return jfail(P, "nesting too deep");
    jv *v = calloc(1, sizeof *v);
    if (!v) return jfail(P, "out of memory");
    char c = *P->p;
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        v->type = c == '{' ? J_OBJ : J_ARR;
        jv **tail = &v->kid;
        P->p++;
        jskip(P);
        if (*P->p == close) { P->p++; return v; }
        for (;;) {
            char *key = NULL;
            if (v->type == J_OBJ) {
                jskip(P);
                if (*P->p != '"' || !(key = jstring(P))) {
                    jfree(v);
                    return jfail(P, "expected a member name");
                }
                jskip(P);
                if (*P->p++ != ':') { free(key); jfree(v); return jfail(P, "expected ':'"); }
            }
            jv *kid = jvalue(P, depth + 1);
            if (!kid) { free(key); jfree(v); return NULL; }
            kid->key = key;
            *tail = kid;
            tail = &kid->next;
            v->len++;
            jskip(P);
            if (*P->p == ',') { P->p++; continue; }
            if (*P->p++ == close) return v;
            P->p--;
            jfree(v);
            return jfail(P, close == '}' ? "expected ',' or '}'" : "expected ',' or ']'");
        }
    }
    if (c == '"') { v->type = J_STR; if ((v->str = jstring(P))) return v; free(v); return NULL; }
    static const struct { const char *word; int type; double num; } words[] = {
        {"true", J_BOOL, 1}, {"false", J_BOOL, 0}, {"null", J_NULL, 0}};
    for (size_t i = 0; i < 3; i++)
        if (!strncmp(P->p, words[i].word, strlen(words[i].word))) {
            P->p += strlen(words[i].word);
            v->type = words[i].type;
            v->num = words[i].num;
            return v;
        }
    char *end;
    v->num = strtod(P->p, &end);
    if (end == P->p) { free(v); return jfail(P, "unexpected character"); }
    v->type = J_NUM;
    P->p = end;
    return v;
}
static const jv *jget(const jv *o, const char *key) {
    for (const jv *k = o && o->type == J_OBJ ? o->kid : NULL; k; k = k->next)
        if (!strcmp(k->key, key)) return k;
    return NULL;
}

/* ---- Scenario -> struct sim_gpu, driven by a table: one line per resolved-scenario key ---- */
static char load_err[600];
static int bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int bad(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(load_err, sizeof load_err, fmt, ap);
    va_end(ap);
    return 0;
}
static const jv *jpath(const jv *o, const char *path) { /* "memory.total_mib" */
    char key[64];
    while (o && *path) {
        size_t n = strcspn(path, ".");
        snprintf(key, sizeof key, "%.*s", (int)n, path);
        o = jget(o, key);
        path += n + (path[n] == '.');
    }
    return o;
}

enum { F_STR, F_HEX, F_UINT, F_U64, F_MIB, F_BOOL, F_LIST };
typedef struct { const char *path; int kind; size_t off, size, count_off; } field;
#define SIZE(T, m) sizeof(((T *)0)->m)
#define G(path, kind, m) {path, kind, offsetof(struct sim_gpu, m), SIZE(struct sim_gpu, m), 0}
#define GL(path, m, n) \
    {path, F_LIST, offsetof(struct sim_gpu, m), SIZE(struct sim_gpu, m), offsetof(struct sim_gpu, n)}
static const field GPU_FIELDS[] = {
    G("name", F_STR, name), G("uuid", F_STR, uuid), G("serial", F_STR, serial), G("bus_id", F_STR, bus_id),
    G("pci_device_id", F_HEX, pci_device_id), G("pci_subsystem_id", F_HEX, pci_subsystem_id),
    G("memory.total_mib", F_MIB, mem_total), G("memory.reserved_mib", F_MIB, mem_reserved),
    G("memory.used_mib", F_MIB, mem_used),
    G("pcie.gen_current", F_UINT, gen_cur), G("pcie.gen_max", F_UINT, gen_max),
    G("pcie.width_current", F_UINT, width_cur), G("pcie.width_max", F_UINT, width_max),
    G("pcie.replay_counter", F_UINT, replays),
    G("clocks.graphics_idle_mhz", F_UINT, gfx_idle), G("clocks.memory_mhz", F_UINT, mem_clk),
    G("clocks.video_idle_mhz", F_UINT, video_idle), G("clocks.max_graphics_mhz", F_UINT, max_gfx),
    G("clocks.max_memory_mhz", F_UINT, max_mem), G("clocks.max_video_mhz", F_UINT, max_video),
    GL("clocks.supported_graphics_mhz", gfx, n_gfx), GL("clocks.supported_memory_mhz", memc, n_memc),
    G("clocks.honours_lock", F_BOOL, honours_lock),
    G("clocks.event_reasons_unlocked", F_U64, reasons_unlocked),
    G("clocks.event_reasons_locked", F_U64, reasons_locked),
    G("temperature_c", F_UINT, temp), G("memory_temperature_c", F_UINT, mem_temp),
    G("power_usage_mw", F_UINT, power_mw), G("pstate", F_UINT, pstate),
    G("utilization.gpu_percent", F_UINT, util_gpu), G("utilization.memory_percent", F_UINT, util_mem),
    G("persistence_mode", F_BOOL, persistence), G("lost", F_BOOL, lost),
    G("ecc.enabled", F_BOOL, ecc_enabled),
    G("ecc.volatile.corrected", F_U64, ecc[0][0]), G("ecc.aggregate.corrected", F_U64, ecc[0][1]),
    G("ecc.volatile.uncorrected", F_U64, ecc[1][0]), G("ecc.aggregate.uncorrected", F_U64, ecc[1][1]),
    G("remapped_rows.correctable", F_UINT, rr_corr), G("remapped_rows.uncorrectable", F_UINT, rr_unc),
    G("remapped_rows.pending", F_BOOL, rr_pending), G("remapped_rows.failure", F_BOOL, rr_failure),
    GL("xid_events", xids, n_xids),
};
#define S(path, kind, m) {path, kind, offsetof(__typeof__(sim), m), SIZE(__typeof__(sim), m), 0}
static const field SYSTEM_FIELDS[] = {
    S("system.driver_version", F_STR, driver), S("system.nvml_version", F_STR, nvml),
    S("system.cuda_driver_version", F_UINT, cuda),
};

/* Read one table entry from object o into base + f->off; "where" prefixes error messages. */
static int read_field(const jv *o, const field *f, void *base, const char *where) {
    static const int json_type[] = {J_STR, J_STR, J_NUM, J_NUM, J_NUM, J_BOOL, J_ARR};
    static const char *expected[] = {"a string", "a string 0xHEX", "an integer >= 0", "an integer >= 0",
                                     "an integer >= 0 (MiB)", "true or false", "a list of integers >= 0"};
    const jv *v = jpath(o, f->path);
    char *dst = (char *)base + f->off;
    if (!v || v->type != json_type[f->kind])
        return bad("%s%s: %s, expected %s", where, f->path, v ? "wrong type" : "missing", expected[f->kind]);
    int in_range = v->num >= 0 && v->num <= (f->kind == F_UINT ? 4294967295.0 : 1.8e19);
    unsigned long long n = in_range ? (unsigned long long)v->num : 0;
    char *end;
    switch (f->kind) {
    case F_STR:
        if (strlen(v->str) >= f->size) return bad("%s%s: longer than %zu", where, f->path, f->size - 1);
        strcpy(dst, v->str);
        return 1;
    case F_HEX:
        *(unsigned *)dst = (unsigned)strtoul(v->str, &end, 16);
        if (strncmp(v->str, "0x", 2) || *end)
            return bad("%s%s: expected %s", where, f->path, expected[F_HEX]);
        return 1;
    case F_BOOL: *(int *)dst = (int)v->num; return 1;
    case F_LIST: {
        unsigned count = 0, max = (unsigned)(f->size / sizeof(unsigned));
        for (const jv *e = v->kid; e; e = e->next, count++) {
            if (e->type != J_NUM || e->num < 0 || e->num > 4294967295.0 || count >= max)
                return bad("%s%s: expected at most %u integers >= 0", where, f->path, max);
            ((unsigned *)dst)[count] = (unsigned)e->num;
        }
        *(unsigned *)((char *)base + f->count_off) = count;
        return 1;
    }
    }
    if (!in_range) return bad("%s%s: expected %s", where, f->path, expected[f->kind]);
    if (f->kind == F_UINT) *(unsigned *)dst = (unsigned)n;
    else *(unsigned long long *)dst = f->kind == F_MIB ? n << 20 : n;
    return 1;
}

/* "burn": [{"at": 0.0, "sm_mhz": 0, "event_reasons": 0, "temperature_c": 60, ...}, ...]; absent or
 * empty: the GPU reads the same under a burn as at rest. gflops/errors are the replay's. */
static int load_burn(const jv *list, struct sim_gpu *g, const char *where) {
    static const char *keys[] = {"sm_mhz", "temperature_c", "memory_temperature_c", "power_mw",
                                 "event_reasons"};
    g->n_burn = 0;
    if (!list || list->type == J_NULL) return 1;
    if (list->type != J_ARR || list->len > MAX_BURN)
        return bad("%sburn: expected a list of at most %d points", where, MAX_BURN);
    for (const jv *p = list->kid; p; p = p->next) {
        struct burn_point *b = &g->burn[g->n_burn];
        const jv *v = jget(p, "at");
        if (p->type != J_OBJ || !v || v->type != J_NUM || v->num < 0 || v->num > 1)
            return bad("%sburn[%u].at: expected a number 0..1", where, g->n_burn);
        b->at = v->num;
        unsigned *dst[] = {&b->sm, &b->temp, &b->mem_temp, &b->power_mw};
        for (int k = 0; k < 5; k++) {
            v = jget(p, keys[k]);
            if (!v || v->type != J_NUM || v->num < 0 || v->num > 1.8e19)
                return bad("%sburn[%u].%s: expected an integer >= 0", where, g->n_burn, keys[k]);
            if (k < 4) *dst[k] = (unsigned)v->num;
            else b->reasons = (unsigned long long)v->num;
        }
        g->n_burn++;
    }
    return 1;
}

static int load_gpu(const jv *o, unsigned index, struct sim_gpu *g) {
    char where[32];
    snprintf(where, sizeof where, "gpus[%u].", index);
    if (o->type != J_OBJ) return bad("gpus[%u]: expected an object", index);
    g->index = index;
    for (size_t i = 0; i < sizeof GPU_FIELDS / sizeof *GPU_FIELDS; i++)
        if (!read_field(o, &GPU_FIELDS[i], g, where)) return 0;
    if (sscanf(g->bus_id, "%x:%x:%x.%x", &g->domain, &g->bus, &g->dev, &g->fn) != 4)
        return bad("%sbus_id: expected DDDDDDDD:BB:DD.F", where);
    /* The keys that are not one plain type: */
    const jv *limit = jget(o, "power_limit_mw"), *nv = jget(o, "nvlink");
    g->has_power_limit = limit && limit->type != J_NULL; /* null: the PG199 has no power limit */
    if (g->has_power_limit) {
        static const field power = G("power_limit_mw", F_UINT, power_limit_mw);
        if (!read_field(o, &power, g, where)) return 0;
    }
    g->nvlink_supported = !(nv && nv->type == J_STR && !strcmp(nv->str, "not_supported"));
    for (const jv *l = g->nvlink_supported && nv && nv->type == J_ARR ? nv->kid : NULL; l; l = l->next) {
        int active = l->type == J_STR && !strcmp(l->str, "active");
        if (g->n_links >= MAX_LINKS || !(active || (l->type == J_STR && !strcmp(l->str, "disabled")))) break;
        g->link_active[g->n_links++] = active;
    }
    if (g->nvlink_supported && (!nv || nv->type != J_ARR || (int)g->n_links != nv->len))
        return bad("%snvlink: expected \"not_supported\" or a list of at most %d \"active\"/\"disabled\"",
                   where, MAX_LINKS);
    return load_burn(jget(o, "burn"), g, where);
}

static int p2p_code(const jv *v) { /* the nvidia-smi topo -p2p legend, in nvmlGpuP2PStatus_t order */
    static const char *legend[] = {"OK", "CNS", "GNS", "TNS", "DR", "NS", "U"};
    for (int i = 0; v && v->type == J_STR && i < 7; i++)
        if (!strcmp(v->str, legend[i])) return i;
    return v && v->type == J_STR && !strcmp(v->str, "X") ? 255 : -1; /* X: the diagonal */
}

static int load_scenario(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return bad("cannot open: %s", strerror(errno));
    long size = fseek(f, 0, SEEK_END) ? -1 : ftell(f);
    char *text = size >= 0 ? malloc((size_t)size + 1) : NULL;
    int complete = text && fseek(f, 0, SEEK_SET) == 0 && fread(text, 1, (size_t)size, f) == (size_t)size;
    fclose(f);
    if (!complete) {
        free(text);
        return bad("cannot read the file");
    }
    text[size] = 0;
    jparser P = {text, text, ""};
    jv *root = jvalue(&P, 0);
    if (root) { jskip(&P); if (*P.p) { jfree(root); root = jfail(&P, "trailing characters"); } }
    free(text);
    if (!root) return bad("invalid JSON: %s", P.err);

    int ok = 0;
    const jv *fmt = jget(root, "format"), *gpus = jget(root, "gpus"), *p2p = jget(root, "p2p"), *g, *m;
    if (!fmt || fmt->type != J_STR || strcmp(fmt->str, "gpubox-nvml-sim/1")) {
        bad("not a resolved scenario (\"format\" is not \"gpubox-nvml-sim/1\"): "
            "write it with gpubox.sim.scenario.resolve_to_file()");
        goto out;
    }
    for (size_t i = 0; i < sizeof SYSTEM_FIELDS / sizeof *SYSTEM_FIELDS; i++)
        if (!read_field(root, &SYSTEM_FIELDS[i], &sim, "")) goto out;
    if (!gpus || gpus->type != J_ARR || gpus->len > MAX_GPUS) {
        bad("gpus: expected a list of at most %d GPUs", MAX_GPUS);
        goto out;
    }
    sim.n = 0;
    for (g = gpus->kid; g; g = g->next, sim.n++)
        if (!load_gpu(g, sim.n, &sim.gpu[sim.n])) goto out;
    static const char *caps[N_CAPS] = {"read", "write", "nvlink", "atomics", "prop"};
    for (int c = 0; c < N_CAPS; c++) {
        if (!(m = jget(p2p, caps[c])) || m->type != J_ARR || m->len != (int)sim.n) {
            bad("p2p.%s: expected a %ux%u matrix of P2P codes", caps[c], sim.n, sim.n);
            goto out;
        }
        unsigned i = 0;
        for (const jv *row = m->kid; row; row = row->next, i++) {
            unsigned j = 0;
            const jv *cell = row->type == J_ARR && row->len == (int)sim.n ? row->kid : NULL;
            for (; cell; cell = cell->next, j++) {
                int code = p2p_code(cell);
                if (code < 0) break;
                sim.p2p[c][i][j] = (unsigned char)code;
            }
            if (j != sim.n) {
                bad("p2p.%s[%u]: expected %u of OK CNS GNS TNS DR NS U (X on the diagonal)",
                    caps[c], i, sim.n);
                goto out;
            }
        }
    }
    ok = 1;
out:
    jfree(root);
    return ok;
}

/* ---- State files: what a setter leaves behind until the next reboot ---- */
static void state_path(const struct sim_gpu *g, const char *what, char *buf, size_t size) {
    snprintf(buf, size, "%s/%s.%s", sim.state_dir, g->bus_id, what);
}
static int read_pair(const struct sim_gpu *g, const char *what, unsigned *a, unsigned *b) {
    char path[1200];
    state_path(g, what, path, sizeof path);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int n = fscanf(f, "%u %u", a, b);
    fclose(f);
    return n;
}
static nvmlReturn_t write_state(const struct sim_gpu *g, const char *what, const char *text) {
    char path[1200], tmp[1300], dir[1024];
    /* mkdir -p: /run/gpubox-sim does not exist after a boot until someone sets something */
    snprintf(dir, sizeof dir, "%s", sim.state_dir);
    for (char *s = dir + 1; ; s++) {
        if (*s == '/' || !*s) {
            char c = *s;
            *s = 0;
            if (mkdir(dir, 0755) && errno != EEXIST) break;
            if (!(*s = c)) break;
        }
    }
    state_path(g, what, path, sizeof path);
    int e = 0;
    if (text) { /* write a temp file, then rename: a reader sees the old state or the new one */
        snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid());
        FILE *f = fopen(tmp, "w");
        int written = f && fputs(text, f) >= 0;
        e = errno;
        if (f && fclose(f)) written = 0, e = errno;
        if (written && rename(tmp, path) == 0) return NVML_SUCCESS;
        e = written ? errno : e;
        unlink(tmp);
    } else if (unlink(path) == 0 || errno == ENOENT) {
        return NVML_SUCCESS;
    } else {
        e = errno;
    }
    /* As the real setters answer a caller without root: */
    return e == EACCES || e == EPERM || e == EROFS ? NVML_ERROR_NO_PERMISSION : NVML_ERROR_UNKNOWN;
}

/* ---- Helpers every entry point uses ---- */
static nvmlReturn_t check(nvmlDevice_t d) {
    if (!sim.refs) return NVML_ERROR_UNINITIALIZED;
    uintptr_t p = (uintptr_t)d, lo = (uintptr_t)&sim.gpu[0], hi = (uintptr_t)&sim.gpu[sim.n];
    if (p < lo || p >= hi || (p - lo) % sizeof(struct sim_gpu)) return NVML_ERROR_INVALID_ARGUMENT;
    return d->lost ? NVML_ERROR_GPU_IS_LOST : NVML_SUCCESS; /* a lost GPU answers nothing else */
}
#define DEV(d) do { nvmlReturn_t r_ = check(d); if (r_) return r_; } while (0)
#define OUT(p) do { if (!(p)) return NVML_ERROR_INVALID_ARGUMENT; } while (0)
#define UINT_GETTER(fn, expr) \
    EXPORT nvmlReturn_t fn(nvmlDevice_t d, unsigned *out) { \
        DEV(d); \
        OUT(out); \
        *out = (expr); \
        return NVML_SUCCESS; \
    }

static nvmlReturn_t put_str(char *buf, unsigned length, const char *value) {
    if (!buf) return NVML_ERROR_INVALID_ARGUMENT;
    if (strlen(value) + 1 > length) return NVML_ERROR_INSUFFICIENT_SIZE;
    memcpy(buf, value, strlen(value) + 1);
    return NVML_SUCCESS;
}
static nvmlReturn_t put_list(unsigned *count, unsigned *out, const unsigned *list, unsigned n) {
    if (!count) return NVML_ERROR_INVALID_ARGUMENT;
    unsigned room = *count;
    *count = n; /* NVML's two-call protocol: the first call learns the count */
    if (n && (!out || room < n)) return NVML_ERROR_INSUFFICIENT_SIZE;
    if (n) memcpy(out, list, n * sizeof *list);
    return NVML_SUCCESS;
}
static unsigned clamp_to(unsigned v, const unsigned *list, unsigned n) {
    unsigned lo = ~0u, hi = 0;
    for (unsigned i = 0; i < n; i++) lo = list[i] < lo ? list[i] : lo, hi = list[i] > hi ? list[i] : hi;
    return !n ? v : v < lo ? lo : v > hi ? hi : v;
}
/* A lock reads back as its MIN, clamped into the supported range, on a GPU that honours it. */
static int gpu_locked(const struct sim_gpu *g, unsigned *mhz) {
    unsigned lo, hi;
    if (!g->honours_lock || read_pair(g, "gpu-locked-clocks", &lo, &hi) != 2) return 0;
    *mhz = clamp_to(lo, g->gfx, g->n_gfx);
    return 1;
}
static int mem_locked(const struct sim_gpu *g, unsigned *mhz) {
    unsigned lo, hi;
    if (!g->honours_lock || read_pair(g, "mem-locked-clocks", &lo, &hi) != 2) return 0;
    *mhz = clamp_to(lo, g->memc, g->n_memc);
    return 1;
}
/* Is a (replayed) gpu-burn loading this GPU? Its replay leaves "<bus_id>.burn" = "start_ms
 * duration_ms pid" in the state folder while it runs. If so, *p is the timeline at that point
 * of the run (numbers linear between points, reasons from the last point passed). */
static int burning(const struct sim_gpu *g, struct burn_point *p) {
    char path[1200];
    long long start, duration;
    int pid;
    if (!g->n_burn) return 0;
    state_path(g, "burn", path, sizeof path);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int n = fscanf(f, "%lld %lld %d", &start, &duration, &pid);
    fclose(f);
    if (n != 3 || pid <= 0 || (kill(pid, 0) && errno != EPERM)) return 0; /* gone: at rest */
    struct timeval tv;
    gettimeofday(&tv, NULL);
    double x = duration > 0 ? ((double)tv.tv_sec * 1000 + tv.tv_usec / 1000 - (double)start) / duration : 1;
    x = x < 0 ? 0 : x > 1 ? 1 : x;
    unsigned i = 0;
    while (i + 1 < g->n_burn && g->burn[i + 1].at <= x) i++;
    *p = g->burn[i];
    if (i + 1 < g->n_burn) {
        const struct burn_point *q = &g->burn[i + 1];
        double w = q->at > p->at ? (x - p->at) / (q->at - p->at) : 0;
#define LERP(m) p->m = (unsigned)(p->m + ((double)q->m - p->m) * w + 0.5)
        LERP(temp), LERP(mem_temp), LERP(power_mw);
        if (p->sm && q->sm) LERP(sm);
#undef LERP
    }
    return 1;
}

/* ---- Init, shutdown, errors, system ---- */
EXPORT nvmlReturn_t nvmlInitWithFlags(unsigned flags) {
    (void)flags;
    nvmlReturn_t ret = NVML_SUCCESS;
    pthread_mutex_lock(&sim_lock);
    if (sim.refs == 0) {
        const char *path = getenv("GPUBOX_SIM_SCENARIO"), *state = getenv("GPUBOX_SIM_STATE_DIR");
        path = path && *path ? path : "/etc/gpubox-sim/scenario.json";
        snprintf(sim.state_dir, sizeof sim.state_dir, "%s", state && *state ? state : "/run/gpubox-sim");
        memset(sim.gpu, 0, sizeof sim.gpu);
        load_err[0] = 0;
        if (!load_scenario(path)) {
            /* The real library says "Driver Not Loaded" when there is nothing to talk to. */
            fprintf(stderr, "gpubox nvml-sim: cannot load scenario %s: %s (set GPUBOX_SIM_SCENARIO)\n",
                    path, load_err);
            ret = NVML_ERROR_DRIVER_NOT_LOADED;
        }
    }
    if (ret == NVML_SUCCESS) sim.refs++;
    pthread_mutex_unlock(&sim_lock);
    return ret;
}
EXPORT nvmlReturn_t nvmlInit_v2(void) { return nvmlInitWithFlags(0); }
EXPORT nvmlReturn_t nvmlInit(void) { return nvmlInitWithFlags(0); }
EXPORT nvmlReturn_t nvmlShutdown(void) {
    pthread_mutex_lock(&sim_lock);
    nvmlReturn_t ret = sim.refs ? (sim.refs--, NVML_SUCCESS) : NVML_ERROR_UNINITIALIZED;
    pthread_mutex_unlock(&sim_lock);
    return ret;
}
EXPORT const char *nvmlErrorString(nvmlReturn_t r) {
    static const char *s[] = {"Success", "Uninitialized", "Invalid Argument", "Not Supported",
        "Insufficient Permissions", "Already Initialized", "Not Found", "Insufficient Size",
        "Insufficient External Power", "Driver Not Loaded", "Timeout", "Interrupt Request Issue",
        "NVML Shared Library Not Found", "Function Not Found", "Corrupted infoROM", "GPU is lost",
        "GPU requires restart", "The operating system has blocked the request.",
        "RM has detected an NVML/RM version mismatch.", "In use by another client", "Insufficient Memory",
        "No data", "The requested vgpu operation is not available on target device, because ECC is enabled",
        "Ran out of critical resources, other than memory", "The requested frequency is not supported",
        "The provided version is invalid/unsupported"};
    return r >= 0 && r < (int)(sizeof s / sizeof *s) ? s[r] : "Unknown Error";
}
EXPORT nvmlReturn_t nvmlSystemGetDriverVersion(char *buf, unsigned length) {
    return sim.refs ? put_str(buf, length, sim.driver) : NVML_ERROR_UNINITIALIZED;
}
EXPORT nvmlReturn_t nvmlSystemGetNVMLVersion(char *buf, unsigned length) {
    return sim.refs ? put_str(buf, length, sim.nvml) : NVML_ERROR_UNINITIALIZED;
}
EXPORT nvmlReturn_t nvmlSystemGetCudaDriverVersion(int *v) {
    if (!sim.refs) return NVML_ERROR_UNINITIALIZED;
    OUT(v);
    *v = sim.cuda;
    return NVML_SUCCESS;
}
EXPORT nvmlReturn_t nvmlSystemGetCudaDriverVersion_v2(int *v) { return nvmlSystemGetCudaDriverVersion(v); }

/* ---- Enumeration ---- */
EXPORT nvmlReturn_t nvmlDeviceGetCount_v2(unsigned *n) {
    if (!sim.refs) return NVML_ERROR_UNINITIALIZED;
    OUT(n);
    *n = sim.n;
    return NVML_SUCCESS;
}
EXPORT nvmlReturn_t nvmlDeviceGetCount(unsigned *n) { return nvmlDeviceGetCount_v2(n); }
/* A lost GPU still counts, but its handle lookup fails with GPU_IS_LOST (as nvidia-smi's
 * "Unable to determine the device handle for GPU...: GPU is lost" shows). The handle is
 * written anyway, so a C caller that ignores the code sees every call on it fail the same way. */
EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned i, nvmlDevice_t *d) {
    if (!sim.refs) return NVML_ERROR_UNINITIALIZED;
    OUT(d);
    if (i >= sim.n) return NVML_ERROR_INVALID_ARGUMENT;
    *d = &sim.gpu[i];
    return check(*d);
}
EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex(unsigned i, nvmlDevice_t *d) {
    return nvmlDeviceGetHandleByIndex_v2(i, d);
}
EXPORT nvmlReturn_t nvmlDeviceGetHandleByPciBusId_v2(const char *bus_id, nvmlDevice_t *d) {
    unsigned dom, bus, dev, fn = 0;
    if (!sim.refs) return NVML_ERROR_UNINITIALIZED;
    OUT(d);
    /* Accept both NVML's 00000000:04:00.0 and sysfs's 0000:04:00.0, any case. */
    if (!bus_id || sscanf(bus_id, "%x:%x:%x.%x", &dom, &bus, &dev, &fn) < 3)
        return NVML_ERROR_INVALID_ARGUMENT;
    for (unsigned i = 0; i < sim.n; i++) {
        struct sim_gpu *g = &sim.gpu[i];
        if (g->domain == dom && g->bus == bus && g->dev == dev && g->fn == fn) return check(*d = g);
    }
    return NVML_ERROR_NOT_FOUND;
}
EXPORT nvmlReturn_t nvmlDeviceGetHandleByPciBusId(const char *b, nvmlDevice_t *d) {
    return nvmlDeviceGetHandleByPciBusId_v2(b, d);
}
UINT_GETTER(nvmlDeviceGetIndex, d->index)

/* ---- Identity ---- */
#define STR_GETTER(fn, member) \
    EXPORT nvmlReturn_t fn(nvmlDevice_t d, char *buf, unsigned length) { \
        DEV(d); \
        return put_str(buf, length, d->member); \
    }
STR_GETTER(nvmlDeviceGetName, name)
STR_GETTER(nvmlDeviceGetUUID, uuid)
STR_GETTER(nvmlDeviceGetSerial, serial)
EXPORT nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t d, nvmlPciInfo_t *p) {
    DEV(d);
    OUT(p);
    memset(p, 0, sizeof *p);
    /* busIdLegacy holds the short domain form: the 8-digit one would not fit with its NUL. */
    snprintf(p->busIdLegacy, sizeof p->busIdLegacy, "%04X:%02X:%02X.%X", d->domain, d->bus, d->dev, d->fn);
    snprintf(p->busId, sizeof p->busId, "%s", d->bus_id);
    p->domain = d->domain, p->bus = d->bus, p->device = d->dev;
    p->pciDeviceId = d->pci_device_id, p->pciSubSystemId = d->pci_subsystem_id;
    return NVML_SUCCESS;
}
EXPORT nvmlReturn_t nvmlDeviceGetPciInfo_v2(nvmlDevice_t d, nvmlPciInfo_t *p) {
    return nvmlDeviceGetPciInfo_v3(d, p);
}
EXPORT nvmlReturn_t nvmlDeviceGetPciInfo(nvmlDevice_t d, nvmlPciInfo_v1_t *p) {
    nvmlPciInfo_t full;
    nvmlReturn_t r = nvmlDeviceGetPciInfo_v3(d, &full);
    if (r) return r;
    OUT(p);
    memset(p, 0, sizeof *p); /* the legacy struct is 52 bytes: never write the v3 one into it */
    memcpy(p->busId, full.busIdLegacy, sizeof p->busId);
    p->domain = full.domain, p->bus = full.bus, p->device = full.device;
    p->pciDeviceId = full.pciDeviceId, p->pciSubSystemId = full.pciSubSystemId;
    return NVML_SUCCESS;
}

/* ---- Memory ---- */
EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t d, nvmlMemory_t *m) {
    DEV(d);
    OUT(m);
    /* v1 has no "reserved": NVML folds it into "used". */
    m->total = d->mem_total, m->used = d->mem_used + d->mem_reserved, m->free = d->mem_total - m->used;
    return NVML_SUCCESS;
}
EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t d, nvmlMemory_v2_t *m) {
    DEV(d);
    OUT(m);
    if (m->version != MEMORY_V2_VERSION) return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    m->total = d->mem_total, m->reserved = d->mem_reserved, m->used = d->mem_used;
    m->free = d->mem_total - d->mem_reserved - d->mem_used;
    return NVML_SUCCESS;
}

/* ---- Topology: P2P, NVLink, PCIe ---- */
EXPORT nvmlReturn_t nvmlDeviceGetP2PStatus(nvmlDevice_t a, nvmlDevice_t b, int cap, int *status) {
    DEV(a);
    DEV(b);
    OUT(status);
    if (cap < 0 || cap >= N_CAPS || a == b) return NVML_ERROR_INVALID_ARGUMENT;
    *status = sim.p2p[cap][a->index][b->index];
    return NVML_SUCCESS;
}
EXPORT nvmlReturn_t nvmlDeviceGetNvLinkState(nvmlDevice_t d, unsigned link, int *active) {
    DEV(d);
    OUT(active);
    if (!d->nvlink_supported) return NVML_ERROR_NOT_SUPPORTED; /* fused off on the PG199 */
    if (link >= d->n_links) return NVML_ERROR_INVALID_ARGUMENT;
    *active = d->link_active[link];
    return NVML_SUCCESS;
}
UINT_GETTER(nvmlDeviceGetCurrPcieLinkGeneration, d->gen_cur)
UINT_GETTER(nvmlDeviceGetMaxPcieLinkGeneration, d->gen_max)
UINT_GETTER(nvmlDeviceGetCurrPcieLinkWidth, d->width_cur)
UINT_GETTER(nvmlDeviceGetMaxPcieLinkWidth, d->width_max)
/* PCIe replays since the driver loaded: the link layer resent a packet the other end NAKed. */
UINT_GETTER(nvmlDeviceGetPcieReplayCounter, d->replays)

/* ---- Clocks ---- */
EXPORT nvmlReturn_t nvmlDeviceGetClockInfo(nvmlDevice_t d, int type, unsigned *mhz) {
    DEV(d);
    OUT(mhz);
    struct burn_point b;
    if (type == CLOCK_GRAPHICS || type == CLOCK_SM) {
        int locked = gpu_locked(d, mhz);
        if (burning(d, &b)) *mhz = b.sm ? b.sm : locked ? *mhz : d->max_gfx; /* busy: no idling */
        else if (!locked) *mhz = d->gfx_idle;
    }
    else if (type == CLOCK_MEM) { if (!mem_locked(d, mhz)) *mhz = d->mem_clk; }
    else if (type == CLOCK_VIDEO) *mhz = d->video_idle;
    else return NVML_ERROR_INVALID_ARGUMENT;
    return NVML_SUCCESS;
}
EXPORT nvmlReturn_t nvmlDeviceGetMaxClockInfo(nvmlDevice_t d, int type, unsigned *mhz) {
    DEV(d);
    OUT(mhz);
    if (type < CLOCK_GRAPHICS || type > CLOCK_VIDEO) return NVML_ERROR_INVALID_ARGUMENT;
    *mhz = type == CLOCK_MEM ? d->max_mem : type == CLOCK_VIDEO ? d->max_video : d->max_gfx;
    return NVML_SUCCESS;
}
EXPORT nvmlReturn_t nvmlDeviceGetSupportedMemoryClocks(nvmlDevice_t d, unsigned *count, unsigned *mhz) {
    DEV(d);
    return put_list(count, mhz, d->memc, d->n_memc);
}
EXPORT nvmlReturn_t nvmlDeviceGetSupportedGraphicsClocks(nvmlDevice_t d, unsigned mem, unsigned *count,
                                                         unsigned *mhz) {
    DEV(d);
    for (unsigned i = 0; i < d->n_memc; i++)
        if (d->memc[i] == mem) return put_list(count, mhz, d->gfx, d->n_gfx);
    return NVML_ERROR_NOT_FOUND; /* not one of the supported memory clocks */
}
EXPORT nvmlReturn_t nvmlDeviceGetCurrentClocksEventReasons(nvmlDevice_t d, unsigned long long *r) {
    unsigned mhz;
    DEV(d);
    OUT(r);
    struct burn_point b;
    *r = gpu_locked(d, &mhz) ? d->reasons_locked : d->reasons_unlocked; /* a lock clears GpuIdle */
    if (burning(d, &b)) *r = b.reasons;
    return NVML_SUCCESS;
}
EXPORT nvmlReturn_t nvmlDeviceGetCurrentClocksThrottleReasons(nvmlDevice_t d, unsigned long long *r) {
    return nvmlDeviceGetCurrentClocksEventReasons(d, r);
}
EXPORT nvmlReturn_t nvmlDeviceGetSupportedClocksEventReasons(nvmlDevice_t d, unsigned long long *r) {
    DEV(d);
    OUT(r);
    *r = 0x1ffULL; /* GpuIdle .. DisplayClockSetting */
    return NVML_SUCCESS;
}
EXPORT nvmlReturn_t nvmlDeviceGetSupportedClocksThrottleReasons(nvmlDevice_t d, unsigned long long *r) {
    return nvmlDeviceGetSupportedClocksEventReasons(d, r);
}
static nvmlReturn_t set_lock(nvmlDevice_t d, const char *what, unsigned lo, unsigned hi,
                             const unsigned *list, unsigned n) {
    if (hi == CLOCK_LIMIT_ID_TDP || hi == CLOCK_LIMIT_ID_UNLIMITED) hi = clamp_to(3000, list, n);
    if (lo < 1 || lo > 3000 || hi < 1 || hi > 3000 || lo > hi) return NVML_ERROR_INVALID_ARGUMENT;
    char text[32];
    snprintf(text, sizeof text, "%u %u\n", lo, hi); /* stored as asked; clamped when read */
    return write_state(d, what, text);
}
EXPORT nvmlReturn_t nvmlDeviceSetGpuLockedClocks(nvmlDevice_t d, unsigned lo, unsigned hi) {
    DEV(d);
    return set_lock(d, "gpu-locked-clocks", lo, hi, d->gfx, d->n_gfx);
}
EXPORT nvmlReturn_t nvmlDeviceResetGpuLockedClocks(nvmlDevice_t d) {
    DEV(d);
    return write_state(d, "gpu-locked-clocks", NULL);
}
EXPORT nvmlReturn_t nvmlDeviceSetMemoryLockedClocks(nvmlDevice_t d, unsigned lo, unsigned hi) {
    DEV(d);
    return set_lock(d, "mem-locked-clocks", lo, hi, d->memc, d->n_memc);
}
EXPORT nvmlReturn_t nvmlDeviceResetMemoryLockedClocks(nvmlDevice_t d) {
    DEV(d);
    return write_state(d, "mem-locked-clocks", NULL);
}

/* ---- Thermals, power, health ---- */
EXPORT nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t d, int sensor, unsigned *c) {
    DEV(d);
    OUT(c);
    if (sensor != 0) return NVML_ERROR_INVALID_ARGUMENT; /* NVML_TEMPERATURE_GPU is the only sensor */
    struct burn_point b;
    *c = burning(d, &b) ? b.temp : d->temp;
    return NVML_SUCCESS;
}
EXPORT nvmlReturn_t nvmlDeviceGetFieldValues(nvmlDevice_t d, int count, nvmlFieldValue_t *v) {
    DEV(d);
    if (count <= 0 || !v) return NVML_ERROR_INVALID_ARGUMENT;
    struct timeval tv;
    struct burn_point b;
    unsigned mem_temp = burning(d, &b) ? b.mem_temp : d->mem_temp;
    gettimeofday(&tv, NULL);
    for (int i = 0; i < count; i++) { /* the call succeeds as a whole; each entry has its own code */
        v[i].timestamp = (long long)tv.tv_sec * 1000000 + tv.tv_usec;
        v[i].latencyUsec = 0;
        memset(&v[i].value, 0, sizeof v[i].value);
        if (v[i].fieldId == FI_DEV_MEMORY_TEMP) {
            v[i].valueType = VALUE_TYPE_UNSIGNED_INT, v[i].value.ui = mem_temp;
            v[i].nvmlReturn = NVML_SUCCESS;
        } else {
            v[i].valueType = 0, v[i].nvmlReturn = NVML_ERROR_NOT_SUPPORTED;
        }
    }
    return NVML_SUCCESS;
}
EXPORT nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t d, unsigned *mw) {
    struct burn_point b;
    DEV(d);
    OUT(mw);
    *mw = burning(d, &b) ? b.power_mw : d->power_mw;
    return NVML_SUCCESS;
}
EXPORT nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t d, unsigned *mw) {
    DEV(d);
    OUT(mw);
    if (!d->has_power_limit) return NVML_ERROR_NOT_SUPPORTED; /* nvidia-smi's "N/A" */
    *mw = d->power_limit_mw;
    return NVML_SUCCESS;
}
EXPORT nvmlReturn_t nvmlDeviceGetPowerManagementLimit(nvmlDevice_t d, unsigned *mw) {
    return nvmlDeviceGetEnforcedPowerLimit(d, mw);
}
EXPORT nvmlReturn_t nvmlDeviceGetPersistenceMode(nvmlDevice_t d, int *mode) {
    unsigned v, unused;
    DEV(d);
    OUT(mode);
    *mode = read_pair(d, "persistence-mode", &v, &unused) >= 1 ? v != 0 : d->persistence;
    return NVML_SUCCESS;
}
EXPORT nvmlReturn_t nvmlDeviceSetPersistenceMode(nvmlDevice_t d, int mode) {
    DEV(d);
    if (mode != 0 && mode != 1) return NVML_ERROR_INVALID_ARGUMENT;
    return write_state(d, "persistence-mode", mode ? "1\n" : "0\n");
}
EXPORT nvmlReturn_t nvmlDeviceGetRemappedRows(nvmlDevice_t d, unsigned *corr, unsigned *unc,
                                              unsigned *pending, unsigned *failure) {
    DEV(d);
    OUT(corr && unc && pending && failure);
    *corr = d->rr_corr, *unc = d->rr_unc, *pending = d->rr_pending, *failure = d->rr_failure;
    return NVML_SUCCESS;
}
EXPORT nvmlReturn_t nvmlDeviceGetTotalEccErrors(nvmlDevice_t d, int type, int counter,
                                                unsigned long long *n) {
    DEV(d);
    OUT(n);
    if (type < 0 || type > 1 || counter < 0 || counter > 1) return NVML_ERROR_INVALID_ARGUMENT;
    if (!d->ecc_enabled) return NVML_ERROR_NOT_SUPPORTED;
    *n = d->ecc[type][counter];
    return NVML_SUCCESS;
}
EXPORT nvmlReturn_t nvmlDeviceGetEccMode(nvmlDevice_t d, int *current, int *pending) {
    DEV(d);
    OUT(current && pending);
    *current = *pending = d->ecc_enabled;
    return NVML_SUCCESS;
}
EXPORT nvmlReturn_t nvmlDeviceGetPerformanceState(nvmlDevice_t d, int *p) {
    DEV(d);
    OUT(p);
    *p = d->pstate;
    return NVML_SUCCESS;
}
EXPORT nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t d, nvmlUtilization_t *u) {
    DEV(d);
    OUT(u);
    struct burn_point b;
    int busy = burning(d, &b);
    u->gpu = busy ? 100 : d->util_gpu, u->memory = busy ? 100 : d->util_mem;
    return NVML_SUCCESS;
}

/* ---- Events: the scenario's XIDs, delivered to whoever registers for them ---- */
struct sim_evset {
    unsigned magic, n, head;
    unsigned long long registered[MAX_GPUS];
    struct { struct sim_gpu *g; unsigned long long xid; } q[MAX_GPUS * MAX_XIDS];
};
#define EVSET_MAGIC 0x6e766d6cu
EXPORT nvmlReturn_t nvmlEventSetCreate(nvmlEventSet_t *set) {
    if (!sim.refs) return NVML_ERROR_UNINITIALIZED;
    OUT(set);
    if (!(*set = calloc(1, sizeof **set))) return NVML_ERROR_MEMORY;
    (*set)->magic = EVSET_MAGIC;
    return NVML_SUCCESS;
}
EXPORT nvmlReturn_t nvmlDeviceGetSupportedEventTypes(nvmlDevice_t d, unsigned long long *types) {
    DEV(d);
    OUT(types);
    *types = EVENT_SUPPORTED;
    return NVML_SUCCESS;
}
EXPORT nvmlReturn_t nvmlDeviceRegisterEvents(nvmlDevice_t d, unsigned long long types, nvmlEventSet_t set) {
    DEV(d);
    if (!set || set->magic != EVSET_MAGIC) return NVML_ERROR_INVALID_ARGUMENT;
    if (types & ~EVENT_SUPPORTED) return NVML_ERROR_NOT_SUPPORTED; /* as NVML: callers mask first */
    pthread_mutex_lock(&sim_lock);
    if ((types & EVENT_XID) && !(set->registered[d->index] & EVENT_XID))
        for (unsigned i = 0; i < d->n_xids; i++) {
            set->q[set->n].g = d;
            set->q[set->n++].xid = d->xids[i];
        }
    set->registered[d->index] |= types;
    pthread_mutex_unlock(&sim_lock);
    return NVML_SUCCESS;
}
static nvmlReturn_t wait_event(nvmlEventSet_t set, nvmlEventData_t *data, unsigned timeout_ms, int v2) {
    if (!sim.refs) return NVML_ERROR_UNINITIALIZED;
    if (!set || set->magic != EVSET_MAGIC || !data) return NVML_ERROR_INVALID_ARGUMENT;
    pthread_mutex_lock(&sim_lock);
    int have = set->head < set->n;
    if (have) {
        data->device = set->q[set->head].g;
        data->eventType = EVENT_XID;
        data->eventData = set->q[set->head++].xid;
        if (v2) data->gpuInstanceId = data->computeInstanceId = 0xFFFFFFFFu; /* not a MIG event */
    }
    pthread_mutex_unlock(&sim_lock);
    if (have) return NVML_SUCCESS;
    struct timespec ts = {timeout_ms / 1000, (long)(timeout_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL); /* nothing more will happen: wait as long as asked, like the driver */
    return NVML_ERROR_TIMEOUT;
}
EXPORT nvmlReturn_t nvmlEventSetWait_v2(nvmlEventSet_t s, nvmlEventData_t *d, unsigned t) {
    return wait_event(s, d, t, 1);
}
EXPORT nvmlReturn_t nvmlEventSetWait(nvmlEventSet_t s, nvmlEventData_t *d, unsigned t) {
    return wait_event(s, d, t, 0);
}
EXPORT nvmlReturn_t nvmlEventSetFree(nvmlEventSet_t set) {
    if (!sim.refs) return NVML_ERROR_UNINITIALIZED;
    if (!set || set->magic != EVSET_MAGIC) return NVML_ERROR_INVALID_ARGUMENT;
    set->magic = 0;
    free(set);
    return NVML_SUCCESS;
}
