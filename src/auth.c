/*
 * auth.c - the user database and SASL PLAIN / AMQPLAIN.
 * Owns the users list; hashing is OpenSSL's SHA-256.
 */
#include "auth.h"
#include "table.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <stdlib.h>
#include <string.h>

const char auth_mechanisms[] = "PLAIN AMQPLAIN";

static void hash_password(const uint8_t salt[AUTH_SALT_LEN], wn_bytes_t password,
                          uint8_t out[AUTH_HASH_LEN]) {
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned int len = AUTH_HASH_LEN;
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    EVP_DigestUpdate(md, salt, AUTH_SALT_LEN);
    EVP_DigestUpdate(md, password.ptr, password.len);
    EVP_DigestFinal_ex(md, out, &len);
    EVP_MD_CTX_free(md);
}

user_t *auth_add_user(auth_db_t *db, const char *name, const char *password, const char *tags) {
    user_t *u = calloc(1, sizeof *u);
    if (!u) return NULL;
    u->name = strdup(name);
    u->tags = strdup(tags ? tags : "");
    if (RAND_bytes(u->salt, AUTH_SALT_LEN) != 1) memset(u->salt, 0x5a, AUTH_SALT_LEN);
    hash_password(u->salt, wn_cstr(password), u->hash);
    u->next = db->users;
    db->users = u;
    return u;
}

user_t *auth_find_user(auth_db_t *db, wn_bytes_t name) {
    for (user_t *u = db->users; u; u = u->next)
        if (wn_bytes_eq_cstr(name, u->name)) return u;
    return NULL;
}

void auth_free(auth_db_t *db) {
    user_t *u = db->users;
    while (u) {
        user_t *next = u->next;
        free(u->name);
        free(u->tags);
        free(u);
        u = next;
    }
    db->users = NULL;
}

bool auth_check_password(const user_t *u, wn_bytes_t password) {
    uint8_t hash[AUTH_HASH_LEN];
    hash_password(u->salt, password, hash);
    return CRYPTO_memcmp(hash, u->hash, AUTH_HASH_LEN) == 0;
}

auth_mech_t auth_mech_parse(wn_bytes_t name) {
    if (wn_bytes_eq_cstr(name, "PLAIN")) return AUTH_MECH_PLAIN;
    if (wn_bytes_eq_cstr(name, "AMQPLAIN")) return AUTH_MECH_AMQPLAIN;
    return AUTH_MECH_NONE;
}

/* PLAIN (RFC 4616): [authzid] NUL authcid NUL passwd. */
static int parse_plain(wn_bytes_t r, wn_bytes_t *user, wn_bytes_t *password) {
    const uint8_t *nul1 = memchr(r.ptr, 0, r.len);
    if (!nul1) return -1;
    const uint8_t *rest = nul1 + 1;
    size_t left = r.len - (size_t)(rest - r.ptr);
    const uint8_t *nul2 = memchr(rest, 0, left);
    if (!nul2) return -1;
    *user = wn_bytes(rest, (size_t)(nul2 - rest));
    *password = wn_bytes(nul2 + 1, left - (size_t)(nul2 + 1 - rest));
    return 0;
}

/* AMQPLAIN: a field table body (no length prefix) with LOGIN and PASSWORD. */
static int parse_amqplain(wn_bytes_t r, wn_bytes_t *user, wn_bytes_t *password) {
    wn_value_t login, pass;
    if (wn_table_validate(r.ptr, r.len) != 0) return -1;
    if (!wn_table_get(r, "LOGIN", &login) || !wn_table_get(r, "PASSWORD", &pass)) return -1;
    if (login.type != WN_FIELD_LONGSTR || pass.type != WN_FIELD_LONGSTR) return -1;
    *user = login.v.bytes;
    *password = pass.v.bytes;
    return 0;
}

int auth_parse_response(auth_mech_t mech, wn_bytes_t response, wn_bytes_t *user,
                        wn_bytes_t *password) {
    if (response.len == 0) return -1;
    switch (mech) {
    case AUTH_MECH_PLAIN:
        return parse_plain(response, user, password);
    case AUTH_MECH_AMQPLAIN:
        return parse_amqplain(response, user, password);
    default:
        return -1;
    }
}
