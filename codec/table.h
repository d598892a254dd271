/*
 * table.h - AMQP field tables and field arrays, with every value type
 * RabbitMQ accepts: t b B s u I i l L f d D S A T F V x.
 *
 * Tables are kept in their wire form. A decoder validates a table once
 * (wn_table_validate) and then hands out a wn_bytes_t over the table's
 * contents, i.e. the bytes after its 32-bit length. Lookups and iteration
 * walk those bytes without allocating, and a table that is only forwarded
 * (message headers, queue arguments) is copied byte-for-byte, never rebuilt.
 *
 * Validation is not recursive on the C stack, so a hostile frame of nested
 * tables cannot overflow it; nesting depth is bounded only by frame size.
 */
#ifndef WN_TABLE_H
#define WN_TABLE_H

#include "bytes.h"

/* Value type tags, as on the wire (RabbitMQ's 0-9-1 errata). */
enum {
    WN_FIELD_BOOL = 't',      /* octet 0/1 */
    WN_FIELD_I8 = 'b',        /* signed 8 */
    WN_FIELD_U8 = 'B',        /* unsigned 8 */
    WN_FIELD_I16 = 's',       /* signed 16 */
    WN_FIELD_U16 = 'u',       /* unsigned 16 */
    WN_FIELD_I32 = 'I',       /* signed 32 */
    WN_FIELD_U32 = 'i',       /* unsigned 32 */
    WN_FIELD_I64 = 'l',       /* signed 64 */
    WN_FIELD_FLOAT = 'f',     /* IEEE-754 single */
    WN_FIELD_DOUBLE = 'd',    /* IEEE-754 double */
    WN_FIELD_DECIMAL = 'D',   /* octet scale + unsigned 32 value */
    WN_FIELD_LONGSTR = 'S',   /* 32-bit length + bytes */
    WN_FIELD_ARRAY = 'A',     /* 32-bit length + values */
    WN_FIELD_TIMESTAMP = 'T', /* unsigned 64, seconds */
    WN_FIELD_U64 = 'L',       /* unsigned 64: not in the errata, but RabbitMQ accepts it */
    WN_FIELD_TABLE = 'F',     /* 32-bit length + entries */
    WN_FIELD_VOID = 'V',      /* no payload */
    WN_FIELD_BYTES = 'x',     /* 32-bit length + bytes */
};

typedef struct wn_decimal {
    uint8_t scale;
    uint32_t value;
} wn_decimal_t;

typedef struct wn_value {
    uint8_t type; /* one of WN_FIELD_* */
    union {
        bool b;
        int8_t i8;
        uint8_t u8;
        int16_t i16;
        uint16_t u16;
        int32_t i32;
        uint32_t u32;
        int64_t i64;
        uint64_t u64; /* timestamp and unsigned 64 */
        float f32;
        double f64;
        wn_decimal_t decimal;
        wn_bytes_t bytes; /* S and x: the string; F and A: contents after the length */
    } v;
} wn_value_t;

/*
 * Check that `len` bytes at `p` are a well-formed table body (entries only,
 * no leading length). Returns 0, or WN_SYNTAX_ERROR (502) for a malformed or
 * truncated table, an unknown type tag, or a length past the end; or
 * WN_INTERNAL_ERROR (541) if nesting deeper than 32 levels needs heap memory
 * for the walk and malloc fails.
 */
int wn_table_validate(const uint8_t *p, size_t len);
/* The same for an array body. */
int wn_array_validate(const uint8_t *p, size_t len);

/* Read a validated table from a reader: 32-bit length + body. On a malformed
 * table sets r->err and returns an empty slice. */
wn_bytes_t wn_get_table(wn_reader_t *r);

/* ---- iteration over validated tables and arrays --------------------------- */

typedef struct wn_table_iter {
    wn_reader_t r;
} wn_table_iter_t;

void wn_table_iter_init(wn_table_iter_t *it, wn_bytes_t table);
/* Next entry; false at the end. Only for validated tables. */
bool wn_table_next(wn_table_iter_t *it, wn_bytes_t *key, wn_value_t *val);
/* The same, also giving the value still encoded (its type octet and all),
 * for copying entries into another table without re-encoding them. */
bool wn_table_next_raw(wn_table_iter_t *it, wn_bytes_t *key, wn_value_t *val, wn_bytes_t *raw);
void wn_array_iter_init(wn_table_iter_t *it, wn_bytes_t array);
bool wn_array_next(wn_table_iter_t *it, wn_value_t *val);

/* First entry named `key`; false if absent. */
bool wn_table_get(wn_bytes_t table, const char *key, wn_value_t *val);
size_t wn_table_count(wn_bytes_t table);

/* RabbitMQ's name for a field type, as its error texts print it ("longstr",
 * "signedint", "long", ...); "unknown" for a tag that is not a type. */
const char *wn_field_type_name(uint8_t type);

/* Integer value of any integer type (b B s u I i l), for argument checks that
 * treat integer types as one class as RabbitMQ does. False for other types. */
bool wn_value_as_int(const wn_value_t *v, int64_t *out);

/* Deep equality: same type and value; tables by their entries in order,
 * arrays element by element. Integer types are distinct here (compare them
 * with wn_value_as_int); booleans compare by truth (any non-zero octet is
 * true); floats and doubles compare by their bits, so NaN equals the same NaN
 * and +0.0 differs from -0.0. Not recursive on the C stack. */
bool wn_value_equal(const wn_value_t *a, const wn_value_t *b);
bool wn_table_equal(wn_bytes_t a, wn_bytes_t b);

/* ---- encoding --------------------------------------------------------------
 * wn_put_table writes a 32-bit length and the bytes of an already encoded body.
 * To build a table: mark = wn_table_begin(w); entries...; wn_table_end(w, mark).
 * A nested table or array value: mark = wn_table_begin_nested(w, key, 'F' or
 * 'A') writes the key, the tag and the length slot; add its entries (or bare
 * values, for an array) and close it with wn_table_end(w, mark). key NULL
 * writes no key: the nested value is an element of an enclosing array.
 * Overflow is sticky in the writer: check w->overflow once at the end.
 */
void wn_put_table(wn_writer_t *w, wn_bytes_t body);
size_t wn_table_begin(wn_writer_t *w);
void wn_table_end(wn_writer_t *w, size_t mark);
size_t wn_table_begin_nested(wn_writer_t *w, const char *key, uint8_t type);
/* An entry: shortstr key, then the value (tag + payload). */
void wn_table_put(wn_writer_t *w, const char *key, const wn_value_t *val);
/* A bare value (tag + payload), for arrays. */
void wn_value_put(wn_writer_t *w, const wn_value_t *val);

/* Shorthands for the common entries. */
void wn_table_put_bool(wn_writer_t *w, const char *key, bool b);
void wn_table_put_str(wn_writer_t *w, const char *key, const char *s);
void wn_table_put_longstr(wn_writer_t *w, const char *key, wn_bytes_t s);
void wn_table_put_i64(wn_writer_t *w, const char *key, int64_t v);

#endif /* WN_TABLE_H */
