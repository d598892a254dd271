/*
 * vhost.c - the vhost registry and per-vhost permissions.
 */
#include "vhost.h"
#include "exchange.h"
#include "queue.h"

#include <stdlib.h>
#include <string.h>

vhost_t *vhost_add(vhost_registry_t *reg, const char *name) {
    vhost_t *vh = calloc(1, sizeof *vh);
    if (!vh) return NULL;
    vh->name = strdup(name);
    vh->next = reg->vhosts;
    reg->vhosts = vh;
    return vh;
}

vhost_t *vhost_find(vhost_registry_t *reg, wn_bytes_t name) {
    for (vhost_t *vh = reg->vhosts; vh; vh = vh->next)
        if (wn_bytes_eq_cstr(name, vh->name)) return vh;
    return NULL;
}

void vhost_set_permissions(vhost_t *vh, user_t *u, const char *configure, const char *write,
                           const char *read) {
    permission_t *p = (permission_t *)vhost_permissions(vh, u);
    if (!p) {
        p = calloc(1, sizeof *p);
        if (!p) return;
        p->user = u;
        p->next = vh->permissions;
        vh->permissions = p;
    } else {
        free(p->configure);
        free(p->write);
        free(p->read);
    }
    p->configure = strdup(configure);
    p->write = strdup(write);
    p->read = strdup(read);
}

const permission_t *vhost_permissions(const vhost_t *vh, const user_t *u) {
    for (permission_t *p = vh->permissions; p; p = p->next)
        if (p->user == u) return p;
    return NULL;
}

static void free_permissions(permission_t *p) {
    while (p) {
        permission_t *next = p->next;
        free(p->configure);
        free(p->write);
        free(p->read);
        free(p);
        p = next;
    }
}

void vhost_free_all(vhost_registry_t *reg) {
    vhost_t *vh = reg->vhosts;
    while (vh) {
        vhost_t *next = vh->next;
        queue_t *q, *qtmp;
        exchange_t *x, *xtmp;
        /* Tearing down: an exchange losing its last binding must not delete
         * itself (it may be the next one this loop frees). */
        HASH_ITER(hh, vh->exchanges, x, xtmp) x->auto_delete = false;
        HASH_ITER(hh, vh->queues, q, qtmp) queue_delete(q);
        HASH_ITER(hh, vh->exchanges, x, xtmp) exchange_delete(x);
        free_permissions(vh->permissions);
        free(vh->name);
        free(vh);
        vh = next;
    }
    reg->vhosts = NULL;
}
