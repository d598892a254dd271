/*
 * alarm.c - resource alarms (see alarm.h).
 */
#include "alarm.h"
#include "broker.h"
#include "connection.h"
#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/statvfs.h>

#define DISK_CHECK_INTERVAL 1.0 /* seconds */

static const char *alarm_reason(void) {
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

void alarm_start(void) {
    ev_timer_init(&broker.disk_timer, on_disk_timer, DISK_CHECK_INTERVAL, DISK_CHECK_INTERVAL);
    ev_timer_start(broker.loop, &broker.disk_timer);
    check_disk();
}

void alarm_stop(void) {
    ev_timer_stop(broker.loop, &broker.disk_timer);
}
