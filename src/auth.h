/*
 * auth.h - users, password checks and the SASL mechanisms (PLAIN, AMQPLAIN).
 *
 * Passwords are stored as RabbitMQ stores them (rabbit_password_hashing_sha256):
 * a 4-byte random salt followed by SHA-256(salt ++ password), so that
 * definitions can later be exported and imported in RabbitMQ's format.
 */
#ifndef WARREN_AUTH_H
#define WARREN_AUTH_H

#include "bytes.h"

#include <stdbool.h>
#include <stdint.h>

#define AUTH_SALT_LEN 4
#define AUTH_HASH_LEN 32

typedef struct user {
    char *name;
    uint8_t salt[AUTH_SALT_LEN];
    uint8_t hash[AUTH_HASH_LEN];
    char *tags; /* "administrator", ... as RabbitMQ */
    struct user *next;
} user_t;

typedef struct auth_db {
    user_t *users;
} auth_db_t;

user_t *auth_add_user(auth_db_t *db, const char *name, const char *password, const char *tags);
user_t *auth_find_user(auth_db_t *db, wn_bytes_t name);
void auth_free(auth_db_t *db);

/* True if `password` is the user's password (constant time in the hash). */
bool auth_check_password(const user_t *u, wn_bytes_t password);

typedef enum auth_mech { AUTH_MECH_NONE, AUTH_MECH_PLAIN, AUTH_MECH_AMQPLAIN } auth_mech_t;

/* The mechanism named by connection.start-ok, or AUTH_MECH_NONE. */
auth_mech_t auth_mech_parse(wn_bytes_t name);
/* The space-separated list offered in connection.start. */
extern const char auth_mechanisms[];

/*
 * Extract the user name and password from a SASL response. Returns 0, or -1
 * if the response is malformed (the caller refuses the login).
 */
int auth_parse_response(auth_mech_t mech, wn_bytes_t response, wn_bytes_t *user,
                        wn_bytes_t *password);

#endif
