/*
 * alarm.c - resource alarms (see alarm.h).
 *
 * The memory alarm measures the heap the broker has allocated and not freed,
 * not its RSS: RSS does not reliably fall after free() (malloc keeps pages
 * for reuse), so an alarm on RSS could stay raised after consumers have
 * taken every message. What can be freed again is what counts: queued
 * messages, buffers, and the entries that track them. With glibc that is
 * mallinfo2()'s chunks in use (uordblks + hblkhd); under the sanitizers,
 * which replace malloc and leave glibc's counts meaningless, their
 * allocator's count of bytes allocated and not freed (freed memory waiting
 * in AddressSanitizer's quarantine is not counted). Where neither is
 * available, or the figure is below it, Warren's own count of bytes in
 * messages and buffers (memory.c) stands in.
 *
 * A measure runs every 100 ms while the alarm is raised or usage is above
 * half the limit, every second otherwise, and also when the counted bytes
 * have grown by a quarter of the room left below the limit: a fast
 * publisher gets a measure at least every 1/256 of the limit near it, and
 * a tiny message costs at most about twice what is counted, so usage
 * cannot overshoot far between measures. What no measure can split is one
 * large allocation: a queue's ring of entries doubling (16 bytes per queued
 * message at once) can carry usage past the limit by that much.
 */
#include "alarm.h"
#include "broker.h"
#include "connection.h"
#include "log.h"
#include "memory.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/statvfs.h>

#define DISK_CHECK_INTERVAL 1.0         /* seconds */
#define MEM_CHECK_FAST      0.1         /* seconds, while raised or above half the limit */
#define MEM_CHECK_SLOW      1.0         /* seconds, otherwise */
#define MEM_MIN_STEP        (64u << 10) /* bytes counted between measures, at least */

static const char *alarm_reason(void) {
    if (broker.alarms & ALARM_MEMORY) return "low on memory";
    return (broker.alarms & ALARM_DISK) ? "low on disk" : "journal write failed";
}

static void block_publishers(bool blocked) {
    for (conn_t *c = broker.conns; c; c = c->next)
        if (c->published || !blocked) conn_set_blocked(c, blocked, alarm_reason());
}

void alarm_set(unsigned alarm, bool raised) {
    unsigned before = broker.alarms;
    if (raised)
        broker.alarms |= alarm;
    else
        broker.alarms &= ~alarm;
    if (!before && broker.alarms) {
        log_warning("resource alarm raised (%s): blocking publishers", alarm_reason());
        block_publishers(true);
    } else if (before && !broker.alarms) {
        log_info("resource alarms cleared: publishers may go on");
        block_publishers(false);
    }
}

void alarm_on_publish(conn_t *c) {
    c->published = true;
    if (broker.alarms) conn_set_blocked(c, true, alarm_reason());
}

static void check_disk(void) {
    struct statvfs st;
    uint64_t limit = broker.cfg.disk_free_limit;
    if (limit == 0) return;
    if (statvfs(broker.cfg.data_dir, &st) < 0) {
        log_warning("cannot read free space of %s: %s", broker.cfg.data_dir, strerror(errno));
        return;
    }
    uint64_t free_bytes = (uint64_t)st.f_bavail * st.f_frsize;
    bool low = free_bytes < limit;
    if (low != ((broker.alarms & ALARM_DISK) != 0)) {
        log_info("free disk space in %s: %" PRIu64 " bytes (limit %" PRIu64 ")",
                 broker.cfg.data_dir, free_bytes, limit);
        alarm_set(ALARM_DISK, low);
    }
}

static void on_disk_timer(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)w;
    (void)revents;
    check_disk();
}

/* ---- memory ------------------------------------------------------------------ */

/* Measure again once the counted bytes have grown by a quarter of the room
 * left (a tiny message costs up to twice what is counted: malloc's overhead,
 * the queue's entry), and on the timer, faster near the limit. */
static void schedule_memory_check(uint64_t used) {
    uint64_t limit = broker.mem_limit;
    uint64_t room = used < limit ? limit - used : 0;
    uint64_t step = room / 4 > limit / 256 ? room / 4 : limit / 256;
    if (step < MEM_MIN_STEP) step = MEM_MIN_STEP;
    broker.mem.check_at = broker.mem.held + step;
    double every =
        (broker.alarms & ALARM_MEMORY) || used > limit / 2 ? MEM_CHECK_FAST : MEM_CHECK_SLOW;
    if (broker.mem_timer.repeat != every) {
        broker.mem_timer.repeat = every;
        ev_timer_again(broker.loop, &broker.mem_timer);
    }
}

void alarm_check_memory(void) {
    const char *how;
    if (!ev_is_active(&broker.mem_timer)) return; /* not started, or shutting down */
    broker.mem.check_at = UINT64_MAX;             /* blocking publishers allocates: no re-entry */
    uint64_t used = mem_in_use(&how);
    bool high = used > broker.mem_limit;
    if (high != ((broker.alarms & ALARM_MEMORY) != 0)) {
        log_info("memory in use: %" PRIu64 " bytes (%s; limit %" PRIu64 ")", used, how,
                 broker.mem_limit);
        alarm_set(ALARM_MEMORY, high);
    }
    schedule_memory_check(used);
}

static void on_mem_timer(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)w;
    (void)revents;
    alarm_check_memory();
}

/* vm_memory_high_watermark: absolute bytes, or a fraction of what the
 * machine (or the cgroup) allows. UINT64_MAX, no alarm, if that is unknown. */
static uint64_t memory_limit(void) {
    const config_t *cfg = &broker.cfg;
    uint64_t total = mem_total();
    if (cfg->mem_absolute_set) {
        log_info("memory high watermark: %" PRIu64 " bytes (of %" PRIu64 " bytes total)",
                 cfg->mem_absolute, total);
        if (total && cfg->mem_absolute > total)
            log_warning("vm_memory_high_watermark.absolute is above the memory available");
        return cfg->mem_absolute;
    }
    if (total == 0) {
        log_warning("cannot tell how much memory there is: the memory alarm is off");
        return UINT64_MAX;
    }
    uint64_t limit = (uint64_t)((double)total * cfg->mem_relative);
    log_info("memory high watermark: %" PRIu64 " bytes (%.3g of %" PRIu64 " bytes total)", limit,
             cfg->mem_relative, total);
    return limit;
}

static void start_memory_checks(void) {
    broker.mem_limit = memory_limit();
    broker.mem.check_at = UINT64_MAX;
    if (broker.mem_limit == UINT64_MAX) return;
    ev_timer_init(&broker.mem_timer, on_mem_timer, MEM_CHECK_SLOW, MEM_CHECK_SLOW);
    ev_timer_start(broker.loop, &broker.mem_timer);
    alarm_check_memory();
}

void alarm_start(void) {
    start_memory_checks();
    ev_timer_init(&broker.disk_timer, on_disk_timer, DISK_CHECK_INTERVAL, DISK_CHECK_INTERVAL);
    ev_timer_start(broker.loop, &broker.disk_timer);
    check_disk();
}

void alarm_stop(void) {
    ev_timer_stop(broker.loop, &broker.mem_timer);
    ev_timer_stop(broker.loop, &broker.disk_timer);
}
