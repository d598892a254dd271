/*
 * memory.h - how much memory the machine gives the broker, and how much of
 * it the broker holds: the measures behind the memory alarm (alarm.c says
 * which measure is used and why).
 *
 * Owns broker.mem: the bytes held in message allocations and buffers,
 * counted as they are allocated and freed, and the count at which the
 * memory alarm wants to measure again. The count is kept on the loop
 * thread only.
 */
#ifndef WARREN_MEMORY_H
#define WARREN_MEMORY_H

#include <stddef.h>
#include <stdint.h>

typedef struct mem_account {
    uint64_t held;     /* bytes in message_t allocations and buffers */
    uint64_t check_at; /* alarm_check_memory() once held reaches this */
} mem_account_t;

/* Count an allocation of n bytes (a message, a buffer growing) or its release. */
void mem_charge(size_t n);
void mem_uncharge(size_t n);

/* Bytes of heap the broker has allocated and not freed: the allocator's own
 * count where it keeps a meaningful one, never less than broker.mem.held.
 * *how names the measure, for the log. */
uint64_t mem_in_use(const char **how);

/* Every MEM_TRIM_INTERVAL seconds, hand the allocator's free pages back to
 * the kernel if it holds many: see memory.c. */
void mem_trim_start(void);
void mem_trim_stop(void);

/* The machine's memory (MemTotal), or a lower cgroup limit (v2 memory.max,
 * v1 memory.limit_in_bytes) on this process or one of its parents; 0 if it
 * cannot be read. */
uint64_t mem_total(void);

#endif
