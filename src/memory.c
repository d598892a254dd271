/*
 * memory.c - the memory alarm's measures (see memory.h, and alarm.c for why
 * these): heap in use from the allocator, Warren's own count of message and
 * buffer bytes, and the memory the machine or the cgroup allows; and the
 * periodic trim that gives freed heap pages back to the kernel.
 */
#include "memory.h"
#include "alarm.h"
#include "broker.h"

#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The sanitizers replace malloc, so glibc's counts say nothing about the
 * heap; their allocator keeps its own (sanitizer/allocator_interface.h,
 * which GCC does not install: declared here). */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define MEM_SANITIZER_ALLOCATOR 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer) ||                         \
    __has_feature(thread_sanitizer)
#define MEM_SANITIZER_ALLOCATOR 1
#endif
#endif

#if defined(MEM_SANITIZER_ALLOCATOR)
size_t __sanitizer_get_current_allocated_bytes(void);

static uint64_t heap_in_use(const char **how) {
    *how = "sanitizer allocator";
    return __sanitizer_get_current_allocated_bytes();
}
#elif defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
/* Chunks in use in every arena plus mmapped ones. It walks the free lists,
 * so it costs milliseconds after a million small frees: alarm.c calls it no
 * more than ten times a second. */
static uint64_t heap_in_use(const char **how) {
    struct mallinfo2 mi = mallinfo2();
    *how = "malloc";
    return (uint64_t)mi.uordblks + mi.hblkhd;
}
#else
static uint64_t heap_in_use(const char **how) {
    *how = "accounted";
    return 0;
}
#endif

void mem_charge(size_t n) {
    broker.mem.held += n;
    if (broker.mem.held >= broker.mem.check_at) alarm_check_memory();
}

void mem_uncharge(size_t n) {
    broker.mem.held -= n;
}

uint64_t mem_in_use(const char **how) {
    uint64_t heap = heap_in_use(how);
    if (heap >= broker.mem.held) return heap;
    /* The allocator's figure cannot be right: fall back on the count. */
    *how = "accounted";
    return broker.mem.held;
}

/* ---- giving memory back ---------------------------------------------------------- */

/*
 * glibc keeps freed small chunks in its heap and returns pages to the kernel
 * only from the top of it, so after a burst of a million queued messages has
 * been consumed the broker's RSS would stay at the burst's high-water mark
 * for good (a few live chunks above the freed ones are enough). Every
 * MEM_TRIM_INTERVAL seconds, if at least MEM_TRIM_MIN bytes of the heap are
 * free, malloc_trim(0) releases every whole free page in it (madvise), which
 * costs a walk of the free chunks: milliseconds for a heap of hundreds of
 * megabytes, once every ten seconds at most. Nothing to do under the
 * sanitizers, whose allocator is not glibc's.
 */
#define MEM_TRIM_INTERVAL 10.0
#define MEM_TRIM_MIN      (32u << 20)

#if !defined(MEM_SANITIZER_ALLOCATOR) && defined(__GLIBC__) &&                                     \
    (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
static void on_trim_timer(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)w;
    (void)revents;
    struct mallinfo2 mi = mallinfo2();
    if (mi.fordblks >= MEM_TRIM_MIN) malloc_trim(0);
}

void mem_trim_start(void) {
    ev_timer_init(&broker.trim_timer, on_trim_timer, MEM_TRIM_INTERVAL, MEM_TRIM_INTERVAL);
    ev_timer_start(broker.loop, &broker.trim_timer);
}

void mem_trim_stop(void) {
    ev_timer_stop(broker.loop, &broker.trim_timer);
}
#else
void mem_trim_start(void) {}

void mem_trim_stop(void) {}
#endif

/* ---- what the machine allows -------------------------------------------------- */

static uint64_t meminfo_total(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    char line[128];
    unsigned long long kb = 0;
    if (!f) return 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemTotal: %llu kB", &kb) == 1) break;
    fclose(f);
    return (uint64_t)kb * 1024;
}

/* A cgroup limit file: a number of bytes, or "max". UINT64_MAX if none. */
static uint64_t read_limit(const char *path) {
    FILE *f = fopen(path, "r");
    unsigned long long v;
    uint64_t limit = UINT64_MAX;
    if (!f) return limit;
    if (fscanf(f, "%llu", &v) == 1) limit = v;
    fclose(f);
    return limit;
}

/* The lowest limit in `file` on the cgroup at `path` (under the hierarchy
 * mounted at `root`) and on its parents, which bind it too. */
static uint64_t hierarchy_limit(const char *root, char *path, const char *file) {
    uint64_t lowest = UINT64_MAX;
    char full[4096];
    for (;;) {
        snprintf(full, sizeof full, "%s%s/%s", root, path, file);
        uint64_t v = read_limit(full);
        if (v < lowest) lowest = v;
        char *slash = strrchr(path, '/');
        if (!slash) break;
        *slash = '\0';
    }
    return lowest;
}

static bool has_controller(const char *list, const char *name) {
    size_t n = strlen(name);
    for (const char *p = list;; p++) {
        if (strncmp(p, name, n) == 0 && (p[n] == ',' || p[n] == '\0')) return true;
        p = strchr(p, ',');
        if (!p) return false;
    }
}

/* The memory limit of the cgroup this process is in: a /proc/self/cgroup line
 * "0::/path" is cgroup v2, "N:...memory...:/path" v1's memory controller. */
static uint64_t cgroup_limit(void) {
    FILE *f = fopen("/proc/self/cgroup", "r");
    char line[4096];
    uint64_t lowest = UINT64_MAX, v = UINT64_MAX;
    if (!f) return lowest;
    while (fgets(line, sizeof line, f)) {
        char *controllers = strchr(line, ':');
        char *path = controllers ? strchr(controllers + 1, ':') : NULL;
        if (!path) continue;
        *controllers++ = '\0';
        *path++ = '\0';
        path[strcspn(path, "\n")] = '\0';
        if (strcmp(path, "/") == 0) *path = '\0';
        if (strcmp(line, "0") == 0 && *controllers == '\0')
            v = hierarchy_limit("/sys/fs/cgroup", path, "memory.max");
        else if (has_controller(controllers, "memory"))
            v = hierarchy_limit("/sys/fs/cgroup/memory", path, "memory.limit_in_bytes");
        if (v < lowest) lowest = v;
    }
    fclose(f);
    return lowest;
}

uint64_t mem_total(void) {
    uint64_t total = meminfo_total();
    uint64_t cg = cgroup_limit();
    if (total == 0) return cg == UINT64_MAX ? 0 : cg;
    return cg < total ? cg : total;
}
