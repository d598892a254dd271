/*
 * alarm.h - resource alarms, and blocking publishers while one is raised.
 *
 * Three alarms: memory (the heap the broker holds is above
 * vm_memory_high_watermark; alarm.c says how it is measured), the disk (free
 * space in data_dir below disk_free_limit, checked every second) and the
 * journal (a write to it failed, e.g. ENOSPC; cleared when a retry
 * succeeds). While any is raised, a connection that publishes is no longer
 * read from, and a client that announced the `connection.blocked`
 * capability gets connection.blocked with the reason (and
 * connection.unblocked when every alarm has cleared), as with RabbitMQ's
 * alarms. Consumers keep going, so queues drain and memory and space come
 * back.
 *
 * Owns broker.alarms, the memory limit and the memory and disk check timers;
 * blocks connections through connection.h.
 */
#ifndef WARREN_ALARM_H
#define WARREN_ALARM_H

#include <stdbool.h>

struct conn;

enum { ALARM_DISK = 1, ALARM_JOURNAL = 2, ALARM_MEMORY = 4 };

/* Work out the memory limit and start checking memory and free disk space
 * (and check both once now). */
void alarm_start(void);
void alarm_stop(void);

/* Raise or clear one alarm; publishers are blocked or released as needed. */
void alarm_set(unsigned alarm, bool raised);

/* Measure memory now (memory.c calls it when the bytes it counts have grown
 * enough since the last measure to matter). */
void alarm_check_memory(void);

/* A connection published: block it if an alarm is raised. */
void alarm_on_publish(struct conn *c);

#endif
