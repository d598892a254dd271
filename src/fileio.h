/*
 * fileio.h - the small blocking file operations of Warren's own log files
 * (definitions.log, dedup.log): read a whole file, write a buffer in full,
 * sync a directory after a rename. Message segments have their own path
 * (store.c, syncer.c).
 */
#ifndef WARREN_FILEIO_H
#define WARREN_FILEIO_H

#include <stddef.h>
#include <stdint.h>

/* The whole file in a malloc'd buffer (*out NULL and *len 0 if it does not
 * exist); 0, or -1 with errno set. */
int fileio_read_all(const char *path, uint8_t **out, size_t *len);
/* Write all n bytes, retrying short writes; 0 or -1. */
int fileio_write_all(int fd, const uint8_t *p, size_t n);
/* fsync a directory, so that a rename in it is durable; 0 or -1. */
int fileio_sync_dir(const char *dir);

#endif
