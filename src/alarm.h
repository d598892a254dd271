/*
 * alarm.h - resource alarms, and blocking publishers while one is raised.
 *
 * Two alarms: the disk (free space in data_dir below disk_free_limit,
 * checked every second) and the journal (a write to it failed, e.g. ENOSPC;
 * cleared when a retry succeeds). While either is raised, a connection that
 * publishes is no longer read from, and a client that announced the
 * `connection.blocked` capability gets connection.blocked with the reason
 * (and connection.unblocked when every alarm has cleared), as with
 * RabbitMQ's alarms. Consumers keep going, so queues drain and space comes
 * back.
 *
 * Owns broker.alarms and the disk check timer; blocks connections through
 * connection.h.
 */
#ifndef WARREN_ALARM_H
#define WARREN_ALARM_H

#include <stdbool.h>

struct conn;

enum { ALARM_DISK = 1, ALARM_JOURNAL = 2 };

/* Start checking free disk space (and check it once now). */
void alarm_start(void);
void alarm_stop(void);

/* Raise or clear one alarm; publishers are blocked or released as needed. */
void alarm_set(unsigned alarm, bool raised);

/* A connection published: block it if an alarm is raised. */
void alarm_on_publish(struct conn *c);

#endif
