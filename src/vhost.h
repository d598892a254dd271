/*
 * vhost.h - virtual hosts and the permissions users have on them.
 *
 * A vhost is the namespace that will hold exchanges, queues and bindings.
 * Permissions are RabbitMQ's configure / write / read regular expressions;
 * for now a user either has an entry for a vhost (and may open it) or not.
 */
#ifndef WARREN_VHOST_H
#define WARREN_VHOST_H

#include "auth.h"
#include "bytes.h"

typedef struct permission {
    user_t *user;
    char *configure, *write, *read;
    struct permission *next;
} permission_t;

struct exchange;
struct queue;
struct binding;

typedef struct vhost {
    char *name;
    struct exchange *exchanges; /* by name */
    struct queue *queues;       /* by name */
    struct binding *bindings;   /* every binding, for uniqueness */
    uint32_t nqueues;
    permission_t *permissions;
    unsigned connections; /* open connections on this vhost */
    struct vhost *next;
} vhost_t;

typedef struct vhost_registry {
    vhost_t *vhosts;
} vhost_registry_t;

vhost_t *vhost_add(vhost_registry_t *reg, const char *name);
vhost_t *vhost_find(vhost_registry_t *reg, wn_bytes_t name);
void vhost_set_permissions(vhost_t *vh, user_t *u, const char *configure, const char *write,
                           const char *read);
const permission_t *vhost_permissions(const vhost_t *vh, const user_t *u);
void vhost_free_all(vhost_registry_t *reg);

#endif
