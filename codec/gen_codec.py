#!/usr/bin/env python3
"""gen_codec.py - generate Warren's AMQP 0-9-1 method and property codec.

Reads the AMQP 0-9-1 spec XML with RabbitMQ's extensions (Debian package
amqp-specs: 0-9-1-rabbit/amqp0-9-1.stripped.extended.xml) and writes
methods.h and methods.c: constants, class and method ids, one struct per
method, a decoder and an encoder per method, metadata for tests and logs,
and the basic class's content properties.

Usage: gen_codec.py --spec FILE --out-dir DIR

The output depends only on the spec's contents and its base name (no paths,
no timestamps), so `make -C codec codec-check` can regenerate and diff it.
The generated C is laid out the way clang-format would lay it out, because
clang-format is not run on generated files.

Standard library only.
"""

import argparse
import os
import sys
import xml.etree.ElementTree as ET

# ---------------------------------------------------------------------------
# What the XML lacks.
#
# RabbitMQ speaks a few methods and one reply code that the 0-9-1-rabbit XML
# does not carry (its own codegen reads a JSON spec that has them). Clients
# use them unchanged, so the codec must know them. Each entry below is what
# RabbitMQ's amqp-rabbitmq-0.9.1.json says. An entry the XML already has is
# skipped: the spec wins.
# ---------------------------------------------------------------------------

# (class, method, index, synchronous, content, [(field, base type), ...])
SUPPLEMENT_METHODS = [
    # Resource alarms: the server tells a publishing client it is blocked.
    ("connection", "blocked", 60, False, False, [("reason", "shortstr")]),
    ("connection", "unblocked", 61, False, False, []),
    # Credential refresh (e.g. OAuth 2 tokens) on an open connection.
    ("connection", "update-secret", 70, True, False,
     [("new-secret", "longstr"), ("reason", "shortstr")]),
    ("connection", "update-secret-ok", 71, True, False, []),
]

# (name, value, class): basic.return's reply code for an unroutable
# mandatory message.
SUPPLEMENT_CONSTANTS = [
    ("no-route", 312, "soft-error"),
]

# The XML calls basic's last property "reserved"; RabbitMQ and every client
# call it cluster-id, and Warren's API uses that name.
PROPERTY_RENAMES = {
    ("basic", "reserved"): "cluster-id",
}

# The class whose <field>s are the content properties Warren decodes. It is
# the only class with content in 0-9-1.
PROPERTIES_CLASS = "basic"

BASE_TYPES = {
    # base type: (C type, metadata tag, reader, writer)
    "bit": ("bool", "WN_T_BIT", None, None),
    "octet": ("uint8_t", "WN_T_OCTET", "wn_get8", "wn_put8"),
    "short": ("uint16_t", "WN_T_SHORT", "wn_get16", "wn_put16"),
    "long": ("uint32_t", "WN_T_LONG", "wn_get32", "wn_put32"),
    "longlong": ("uint64_t", "WN_T_LONGLONG", "wn_get64", "wn_put64"),
    "shortstr": ("wn_bytes_t", "WN_T_SHORTSTR", "wn_get_shortstr", "wn_put_shortstr"),
    "longstr": ("wn_bytes_t", "WN_T_LONGSTR", "wn_get_longstr", "wn_put_longstr"),
    "table": ("wn_bytes_t", "WN_T_TABLE", "wn_get_table", "wn_put_table"),
    "timestamp": ("uint64_t", "WN_T_TIMESTAMP", "wn_get64", "wn_put64"),
}

# Member name of the struct of a method without arguments (C forbids empty
# structs).
PLACEHOLDER = "unused"

COLUMN_LIMIT = 100


class GenError(Exception):
    pass


# ---------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------


class Field:
    def __init__(self, name, base):
        if base not in BASE_TYPES:
            raise GenError("field %s: unknown type %s" % (name, base))
        self.name = name  # the spec's spelling
        self.base = base
        self.c_name = c_ident(name)


class Method:
    def __init__(self, cls, name, index, synchronous, content, fields):
        self.cls = cls
        self.name = name
        self.index = index
        self.synchronous = synchronous
        self.content = content
        self.fields = fields
        self.id = cls.index << 16 | index
        self.full_name = "%s.%s" % (cls.name, name)
        self.lower = "%s_%s" % (c_ident(cls.name), c_ident(name))
        self.macro = "WN_" + self.lower.upper()
        self.type = "wn_%s_t" % self.lower


class Class:
    def __init__(self, name, index):
        self.name = name
        self.index = index
        self.methods = []
        self.properties = []
        self.macro = "WN_CLASS_" + c_ident(name).upper()


class Constant:
    def __init__(self, name, value, error_class):
        self.name = name
        self.value = value
        self.error_class = error_class  # "hard-error", "soft-error" or None
        self.macro = "WN_" + c_ident(name).upper()

    @property
    def is_reply_code(self):
        # Error codes carry a class (frame-error included); reply-success
        # is the one reply code without one. The rest are frame constants.
        return self.error_class is not None or not self.name.startswith("frame-")


def c_ident(name):
    return name.replace("-", "_")


def parse_bool(value):
    return value is not None and value not in ("0", "")


def resolve_domain(domains, name, what):
    seen = set()
    while name not in BASE_TYPES:
        if name in seen or name not in domains:
            raise GenError("%s: cannot resolve domain %s" % (what, name))
        seen.add(name)
        name = domains[name]
    return name


def parse_field(domains, node, what):
    name = node.get("name")
    domain = node.get("domain") or node.get("type")
    if not name or not domain:
        raise GenError("%s: field without name or type" % what)
    return Field(name, resolve_domain(domains, domain, "%s.%s" % (what, name)))


def load_spec(path):
    root = ET.parse(path).getroot()
    domains = {d.get("name"): d.get("type") for d in root.findall("domain")}
    constants = [
        Constant(c.get("name"), int(c.get("value")), c.get("class"))
        for c in root.findall("constant")
    ]
    classes = []
    for cnode in root.findall("class"):
        cls = Class(cnode.get("name"), int(cnode.get("index")))
        for fnode in cnode.findall("field"):
            prop = parse_field(domains, fnode, cls.name)
            renamed = PROPERTY_RENAMES.get((cls.name, prop.name))
            if renamed:
                prop = Field(renamed, prop.base)
            cls.properties.append(prop)
        for mnode in cnode.findall("method"):
            what = "%s.%s" % (cls.name, mnode.get("name"))
            fields = [parse_field(domains, f, what) for f in mnode.findall("field")]
            cls.methods.append(
                Method(cls, mnode.get("name"), int(mnode.get("index")),
                       parse_bool(mnode.get("synchronous")),
                       parse_bool(mnode.get("content")), fields))
        classes.append(cls)
    add_supplement(classes, constants)
    classes.sort(key=lambda c: c.index)
    for cls in classes:
        cls.methods.sort(key=lambda m: m.index)
    check_model(classes, constants)
    return classes, constants


def add_supplement(classes, constants):
    by_name = {c.name: c for c in classes}
    for cname, mname, index, sync, content, fields in SUPPLEMENT_METHODS:
        cls = by_name.get(cname)
        if cls is None:
            raise GenError("supplement: no class %s in the spec" % cname)
        if any(m.name == mname for m in cls.methods):
            continue
        cls.methods.append(Method(cls, mname, index, sync, content,
                                  [Field(n, t) for n, t in fields]))
    known = {c.name for c in constants}
    for name, value, error_class in SUPPLEMENT_CONSTANTS:
        if name in known:
            continue
        # Keep the reply codes in ascending order, where the XML keeps them.
        at = next((i for i, c in enumerate(constants)
                   if c.is_reply_code and c.value > value), len(constants))
        constants.insert(at, Constant(name, value, error_class))


def check_model(classes, constants):
    """Refuse a spec that would generate colliding C names or ids."""
    macros = set()
    for name in [c.macro for c in constants] + [c.macro for c in classes] + [
            m.macro for c in classes for m in c.methods]:
        if name in macros:
            raise GenError("two definitions would be named %s" % name)
        macros.add(name)
    ids = [m.id for c in classes for m in c.methods]
    if len(set(ids)) != len(ids):
        raise GenError("duplicate method ids")
    for cls in classes:
        for m in cls.methods:
            names = [f.c_name for f in m.fields]
            if len(set(names)) != len(names):
                raise GenError("%s: duplicate field names" % m.full_name)
    props = properties_of(classes)
    if len(props) > 15:
        raise GenError("more than 15 properties need flag continuation words")
    for p in props:
        if p.base == "bit":
            raise GenError("bit properties are not supported")


def properties_of(classes):
    for cls in classes:
        if cls.name == PROPERTIES_CLASS:
            return cls.properties
    raise GenError("no %s class in the spec" % PROPERTIES_CLASS)


def all_methods(classes):
    return [m for c in classes for m in c.methods]


# ---------------------------------------------------------------------------
# Emitting C
# ---------------------------------------------------------------------------


class Out:
    def __init__(self):
        self.lines = []

    def __call__(self, text=""):
        self.lines.extend(text.split("\n") if text else [""])

    def defines(self, pairs):
        """A block of #defines with their values aligned, as clang-format's
        AlignConsecutiveMacros would."""
        width = max(len(name) for name, _ in pairs)
        for name, value in pairs:
            self("#define %-*s %s" % (width, name, value))

    def text(self):
        return "\n".join(self.lines).rstrip("\n") + "\n"


def banner(spec_name, title, body):
    lines = ["/*", " * Generated by gen_codec.py from %s. Do not edit." % spec_name, " *"]
    lines.append(" * " + title)
    lines.extend((" * " + line).rstrip() for line in body.rstrip("\n").split("\n"))
    lines.append(" */")
    return "\n".join(lines)


def wrap_initializer(indent, items, suffix):
    """Lay out `{a, b, c}suffix` within the column limit, continuing on lines
    aligned after the brace, as clang-format does."""
    pieces = [item + "," for item in items[:-1]] + [items[-1] + "}" + suffix]
    lines, cur = [], indent + "{" + pieces[0]
    for piece in pieces[1:]:
        if len(cur) + 1 + len(piece) <= COLUMN_LIMIT:
            cur += " " + piece
        else:
            lines.append(cur)
            cur = indent + " " + piece
    lines.append(cur)
    return lines


def function_head(head, params):
    """`head(params) {`, with the parameters continued under the first one
    when the line would be too long, as clang-format does."""
    line = "%s(%s) {" % (head, ", ".join(params))
    if len(line) <= COLUMN_LIMIT:
        return [line]
    pad = " " * (len(head) + 1)
    return ["%s(%s," % (head, params[0])] + [
        pad + p + ("," if i < len(params) - 2 else ") {") for i, p in enumerate(params[1:])]


HEADER_DOC = """
Decoding is in place: shortstr, longstr and table members of a decoded
method point into the payload they came from and live as long as it does. A
table member holds the table's body, after its 32-bit length, validated
with wn_table_validate. Reserved fields are ordinary members, so a decode
followed by an encode gives back the same bytes.

Method ids are class id << 16 | method id, as on the wire: the first four
bytes of a method frame's payload, read big-endian.
"""

TYPES_DOC = """\
/* ---- metadata, for tests and logs ------------------------------------------ */

typedef enum {
    WN_T_BIT,
    WN_T_OCTET,
    WN_T_SHORT,
    WN_T_LONG,
    WN_T_LONGLONG,
    WN_T_SHORTSTR,
    WN_T_LONGSTR,
    WN_T_TABLE,
    WN_T_TIMESTAMP
} wn_field_type_t;

typedef struct {
    const char *name; /* the spec's spelling: "routing-key" */
    wn_field_type_t type;
    uint16_t offset; /* offsetof the member in the method's struct */
} wn_field_info_t;

typedef struct {
    uint32_t id;
    const char *name; /* "basic.publish" */
    uint16_t struct_size;
    uint8_t nfields;
    const wn_field_info_t *fields; /* in wire order; NULL if there are none */
    bool content;                  /* followed by a content header and body */
    bool synchronous;              /* expects a reply method */
} wn_method_info_t;

/* Every method, in ascending id order. */
extern const wn_method_info_t wn_method_infos[];
extern const size_t wn_method_info_count;

/* The method's metadata, or NULL for an unknown id. */
const wn_method_info_t *wn_method_info(uint32_t id);"""

FUNCS_DOC = """\
/*
 * Decode a method frame's payload (class id, method id, arguments) into *m.
 * Returns 0; WN_SYNTAX_ERROR if the payload is truncated, a table in it is
 * malformed, or bytes are left over after the last argument;
 * WN_COMMAND_INVALID for an unknown class or method id, with m->id set so
 * the caller can report it. Bits beyond the method's last bit field are
 * ignored, as RabbitMQ ignores them.
 */
int wn_method_decode(const uint8_t *payload, size_t len, wn_method_t *m);

/*
 * Encode *m as a method frame's payload into out. Returns its length, or 0
 * if it does not fit in cap, a shortstr is longer than 255 bytes, or the id
 * is unknown.
 */
size_t wn_method_encode(const wn_method_t *m, uint8_t *out, size_t cap);

/* "basic.publish", "connection.update-secret-ok"; NULL for an unknown id. */
const char *wn_method_name(uint32_t id);
/* Whether a content header and body follow the method. */
bool wn_method_has_content(uint32_t id);
/* Whether the method expects a reply method (the spec's attribute). */
bool wn_method_is_synchronous(uint32_t id);"""

PROPS_FUNCS_DOC = """\
/*
 * Decode a content header frame's payload. The properties are read with
 * basic's layout whatever class_id says, since basic is the only content
 * class; the caller checks class_id against the method it follows.
 * Returns 0, or WN_SYNTAX_ERROR if the payload is truncated, the headers
 * table is malformed, bytes are left over, an unused flag bit is set, or a
 * continuation flag word announces properties that do not exist.
 * Properties whose flag is clear are zero.
 */
int wn_content_header_decode(const uint8_t *payload, size_t len, wn_content_header_t *h);

/*
 * Encode a content header frame's payload: only the properties whose flag is
 * set, in order (flag bits that name no property are dropped). Returns its
 * length, or 0 if it does not fit in cap or a shortstr is too long.
 */
size_t wn_content_header_encode(const wn_content_header_t *h, uint8_t *out, size_t cap);"""


def method_struct(out, m):
    out("/* %s (%d/%d)%s */" % (m.full_name, m.cls.index, m.index,
                               ", carries content" if m.content else ""))
    out("typedef struct wn_%s {" % m.lower)
    if not m.fields:
        out("    uint8_t %s; /* no arguments; C forbids empty structs */" % PLACEHOLDER)
    for f in m.fields:
        out("    %s %s;" % (BASE_TYPES[f.base][0], f.c_name))
    out("} %s;" % m.type)
    out()


def gen_header(classes, constants, spec_name):
    out = Out()
    methods = all_methods(classes)
    props = properties_of(classes)
    out(banner(spec_name, "methods.h - the AMQP 0-9-1 methods and basic content properties:",
               "constants, class and method ids, one struct per method, their decoder\n"
               "and encoder, and metadata for tests and logs.\n" + HEADER_DOC))
    out("#ifndef WN_METHODS_H")
    out("#define WN_METHODS_H")
    out()
    out("#include <stdbool.h>")
    out("#include <stddef.h>")
    out("#include <stdint.h>")
    out()
    out('#include "bytes.h"')
    out('#include "table.h"')
    out()

    out("/* ---- constants -------------------------------------------------------------- */")
    out()
    out("/* Frame types and sizes. */")
    out.defines([(c.macro, str(c.value)) for c in constants if not c.is_reply_code])
    out()
    out("/* Reply codes: a soft error closes the channel, a hard one the connection. */")
    out.defines([(c.macro, str(c.value)) for c in constants if c.is_reply_code])
    out()
    out('/* "NOT_FOUND" for 404 (RabbitMQ\'s spelling in close texts); NULL if unknown. */')
    out("const char *wn_reply_name(uint16_t code);")
    out("/* Whether the reply code is a hard error, i.e. closes the connection. */")
    out("bool wn_reply_is_hard_error(uint16_t code);")
    out()

    out("/* ---- classes and methods ---------------------------------------------------- */")
    out()
    out.defines([(c.macro, str(c.index)) for c in classes])
    out()
    out.defines([
        ("WN_METHOD_ID(cls, m)", "((uint32_t)(cls) << 16 | (uint32_t)(m))"),
        ("WN_METHOD_CLASS(id)", "((uint16_t)((id) >> 16))"),
        ("WN_METHOD_INDEX(id)", "((uint16_t)((id) & 0xFFFFu))"),
    ])
    for cls in classes:
        out()
        out.defines([(m.macro, "0x%08Xu" % m.id) for m in cls.methods])
    out()

    out("/* ---- method arguments ------------------------------------------------------- */")
    out()
    for m in methods:
        method_struct(out, m)
    out("typedef struct wn_method {")
    out("    uint32_t id; /* WN_BASIC_PUBLISH, ...: selects the member of u */")
    out("    union {")
    for m in methods:
        out("        %s %s;" % (m.type, m.lower))
    out("    } u;")
    out("} wn_method_t;")
    out()
    out(FUNCS_DOC)
    out()
    out(TYPES_DOC)
    out()

    out("/* ---- basic content properties ----------------------------------------------- */")
    out()
    out("/* Property flags: the first property is bit 15, the next bit 14, ... */")
    flags = [("WN_%s_%s_FLAG" % (PROPERTIES_CLASS.upper(), p.c_name.upper()),
              "(1u << %d)" % (15 - i)) for i, p in enumerate(props)]
    out.defines(flags)
    out()
    out("/* Every property flag: the other bits of the flags word must be zero. */")
    out.defines([("WN_%s_ALL_FLAGS" % PROPERTIES_CLASS.upper(),
                  "0x%04Xu" % props_mask(props))])
    out()
    out("typedef struct wn_%s_props {" % PROPERTIES_CLASS)
    out("    uint16_t flags; /* which properties are present: WN_%s_*_FLAG */"
        % PROPERTIES_CLASS.upper())
    for p in props:
        note = " /* table body, validated */" if p.base == "table" else ""
        out("    %s %s;%s" % (BASE_TYPES[p.base][0], p.c_name, note))
    out("} wn_%s_props_t;" % PROPERTIES_CLASS)
    out()
    out("typedef struct wn_content_header {")
    out("    uint16_t class_id;")
    out("    uint16_t weight; /* always 0 in 0-9-1 */")
    out("    uint64_t body_size;")
    out("    wn_%s_props_t props;" % PROPERTIES_CLASS)
    out("} wn_content_header_t;")
    out()
    out(PROPS_FUNCS_DOC)
    out()
    out("#endif /* WN_METHODS_H */")
    return out.text()


def props_mask(props):
    mask = 0
    for i in range(len(props)):
        mask |= 1 << (15 - i)
    return mask


# ---- methods.c ---------------------------------------------------------------


def bit_runs(fields):
    """Yield ("bits", [fields]) for each run of consecutive bit fields (at most
    eight per octet) and ("field", field) for every other field."""
    run = []
    for f in fields:
        if f.base == "bit":
            run.append(f)
            if len(run) == 8:
                yield "bits", run
                run = []
            continue
        if run:
            yield "bits", run
            run = []
        yield "field", f
    if run:
        yield "bits", run


def gen_decoder(out, m):
    has_bits = any(f.base == "bit" for f in m.fields)
    head = function_head("static void decode_" + m.lower, ["wn_reader_t *r", m.type + " *m"])
    if not m.fields:
        out.lines.extend(head)
        out("    (void)r;")
        out("    m->%s = 0;" % PLACEHOLDER)
        out("}")
        out()
        return
    out.lines.extend(head)
    if has_bits:
        out("    uint8_t bits;")
        out()
    for kind, item in bit_runs(m.fields):
        if kind == "bits":
            out("    bits = wn_get8(r);")
            for i, f in enumerate(item):
                out("    m->%s = (bits & 0x%02X) != 0;" % (f.c_name, 1 << i))
        else:
            out("    m->%s = %s(r);" % (item.c_name, BASE_TYPES[item.base][2]))
    out("}")
    out()


def gen_encoder(out, m):
    out.lines.extend(function_head("static void encode_" + m.lower,
                                   ["wn_writer_t *w", "const %s *m" % m.type]))
    if not m.fields:
        out("    (void)w;")
        out("    (void)m;")
        out("}")
        out()
        return
    if any(f.base == "bit" for f in m.fields):
        out("    uint8_t bits;")
        out()
    for kind, item in bit_runs(m.fields):
        if kind == "bits":
            out("    bits = 0;")
            for i, f in enumerate(item):
                out("    if (m->%s) bits |= 0x%02X;" % (f.c_name, 1 << i))
            out("    wn_put8(w, bits);")
        else:
            out("    %s(w, m->%s);" % (BASE_TYPES[item.base][3], item.c_name))
    out("}")
    out()


def gen_reply_functions(out, constants):
    replies = [c for c in constants if c.is_reply_code]
    out("const char *wn_reply_name(uint16_t code) {")
    out("    switch (code) {")
    for c in replies:
        out("    case %s:" % c.macro)
        out('        return "%s";' % c_ident(c.name).upper())
    out("    default:")
    out("        return NULL;")
    out("    }")
    out("}")
    out()
    out("bool wn_reply_is_hard_error(uint16_t code) {")
    out("    switch (code) {")
    for c in replies:
        if c.error_class == "hard-error":
            out("    case %s:" % c.macro)
    out("        return true;")
    out("    default:")
    out("        return false;")
    out("    }")
    out("}")
    out()


def gen_metadata(out, methods):
    for m in methods:
        if not m.fields:
            continue
        out("static const wn_field_info_t %s_fields[] = {" % m.lower)
        for f in m.fields:
            out.lines.extend(wrap_initializer(
                "    ", ['"%s"' % f.name, BASE_TYPES[f.base][1],
                         "offsetof(%s, %s)" % (m.type, f.c_name)], ","))
        out("};")
        out()
    out("const wn_method_info_t wn_method_infos[] = {")
    for m in methods:
        fields = "%s_fields" % m.lower if m.fields else "NULL"
        out.lines.extend(wrap_initializer("    ", [
            m.macro, '"%s"' % m.full_name, "sizeof(%s)" % m.type, str(len(m.fields)),
            fields, "true" if m.content else "false",
            "true" if m.synchronous else "false"], ","))
    out("};")
    out("const size_t wn_method_info_count = sizeof wn_method_infos / sizeof wn_method_infos[0];")
    out()


def gen_dispatch(out, methods):
    out("int wn_method_decode(const uint8_t *payload, size_t len, wn_method_t *m) {")
    out("    wn_reader_t r;")
    out()
    out("    wn_reader_init(&r, payload, len);")
    out("    m->id = wn_get32(&r);")
    out("    if (r.err) return WN_SYNTAX_ERROR;")
    out("    switch (m->id) {")
    for m in methods:
        out("    case %s:" % m.macro)
        out("        decode_%s(&r, &m->u.%s);" % (m.lower, m.lower))
        out("        break;")
    out("    default:")
    out("        return WN_COMMAND_INVALID;")
    out("    }")
    out("    return r.err || wn_reader_left(&r) != 0 ? WN_SYNTAX_ERROR : 0;")
    out("}")
    out()
    out("size_t wn_method_encode(const wn_method_t *m, uint8_t *out, size_t cap) {")
    out("    wn_writer_t w;")
    out()
    out("    wn_writer_init(&w, out, cap);")
    out("    wn_put32(&w, m->id);")
    out("    switch (m->id) {")
    for m in methods:
        out("    case %s:" % m.macro)
        out("        encode_%s(&w, &m->u.%s);" % (m.lower, m.lower))
        out("        break;")
    out("    default:")
    out("        return 0;")
    out("    }")
    out("    return w.overflow ? 0 : w.len;")
    out("}")
    out()


LOOKUP_C = """\
/* wn_method_infos is sorted by id, so a binary search finds any method in
 * at most six steps without a second generated table. */
const wn_method_info_t *wn_method_info(uint32_t id) {
    size_t lo = 0, hi = wn_method_info_count;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (wn_method_infos[mid].id == id) return &wn_method_infos[mid];
        if (wn_method_infos[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const char *wn_method_name(uint32_t id) {
    const wn_method_info_t *info = wn_method_info(id);
    return info ? info->name : NULL;
}

bool wn_method_has_content(uint32_t id) {
    const wn_method_info_t *info = wn_method_info(id);
    return info && info->content;
}

bool wn_method_is_synchronous(uint32_t id) {
    const wn_method_info_t *info = wn_method_info(id);
    return info && info->synchronous;
}
"""

PROPS_C = """\
/*
 * The flags word: every bit names a property, except bit 0, which announces
 * another flags word (for classes with more than 15 properties), and the
 * unused bits between. Basic has fewer than 15, so any further word may only
 * continue the chain; a property bit in it, or an unused bit in the first,
 * names a property that does not exist.
 */
static uint16_t read_property_flags(wn_reader_t *r) {
    uint16_t first = wn_get16(r);
    uint16_t word = first;

    if (first & ~(WN_%(CLS)s_ALL_FLAGS | 1u)) r->err = true;
    while ((word & 1u) && !r->err) {
        word = wn_get16(r);
        if (word & ~1u) r->err = true;
    }
    return (uint16_t)(first & WN_%(CLS)s_ALL_FLAGS);
}
"""


def gen_props(out, props):
    cls = PROPERTIES_CLASS
    out(PROPS_C % {"CLS": cls.upper()})
    out("static void decode_%s_props(wn_reader_t *r, wn_%s_props_t *p) {" % (cls, cls))
    out("    memset(p, 0, sizeof *p);")
    out("    p->flags = read_property_flags(r);")
    for p in props:
        out("    if (p->flags & WN_%s_%s_FLAG) p->%s = %s(r);"
            % (cls.upper(), p.c_name.upper(), p.c_name, BASE_TYPES[p.base][2]))
    out("}")
    out()
    out("static void encode_%s_props(wn_writer_t *w, const wn_%s_props_t *p) {" % (cls, cls))
    out("    uint16_t flags = p->flags & WN_%s_ALL_FLAGS;" % cls.upper())
    out()
    out("    wn_put16(w, flags);")
    for p in props:
        out("    if (flags & WN_%s_%s_FLAG) %s(w, p->%s);"
            % (cls.upper(), p.c_name.upper(), BASE_TYPES[p.base][3], p.c_name))
    out("}")
    out()
    out("int wn_content_header_decode(const uint8_t *payload, size_t len, wn_content_header_t *h) {")
    out("    wn_reader_t r;")
    out()
    out("    wn_reader_init(&r, payload, len);")
    out("    h->class_id = wn_get16(&r);")
    out("    h->weight = wn_get16(&r);")
    out("    h->body_size = wn_get64(&r);")
    out("    decode_%s_props(&r, &h->props);" % cls)
    out("    return r.err || wn_reader_left(&r) != 0 ? WN_SYNTAX_ERROR : 0;")
    out("}")
    out()
    out("size_t wn_content_header_encode(const wn_content_header_t *h, uint8_t *out, size_t cap) {")
    out("    wn_writer_t w;")
    out()
    out("    wn_writer_init(&w, out, cap);")
    out("    wn_put16(&w, h->class_id);")
    out("    wn_put16(&w, h->weight);")
    out("    wn_put64(&w, h->body_size);")
    out("    encode_%s_props(&w, &h->props);" % cls)
    out("    return w.overflow ? 0 : w.len;")
    out("}")


def gen_source(classes, constants, spec_name):
    out = Out()
    methods = all_methods(classes)
    out(banner(spec_name, "methods.c - the AMQP 0-9-1 method and content-header codec.", """
One decoder and one encoder per method, so bit packing and field order
are settled here, by the generator, and never by hand. Decoders read the
whole method through a bounds-checked wn_reader_t and check for an error
once at the end; encoders likewise check the writer's overflow once.
"""))
    out('#include "methods.h"')
    out()
    out("#include <stddef.h>")
    out("#include <string.h>")
    out()
    out("/* ---- reply codes ------------------------------------------------------------ */")
    out()
    gen_reply_functions(out, constants)
    out("/* ---- method decoders: bits are packed LSB first, a run per octet ------------- */")
    out()
    for m in methods:
        gen_decoder(out, m)
    out("/* ---- method encoders -------------------------------------------------------- */")
    out()
    for m in methods:
        gen_encoder(out, m)
    out("/* ---- dispatch --------------------------------------------------------------- */")
    out()
    gen_dispatch(out, methods)
    out("/* ---- metadata --------------------------------------------------------------- */")
    out()
    gen_metadata(out, methods)
    out(LOOKUP_C)
    out("/* ---- basic content properties ----------------------------------------------- */")
    out()
    gen_props(out, properties_of(classes))
    return out.text()


def check_lines(name, text):
    for n, line in enumerate(text.split("\n"), 1):
        if len(line) > COLUMN_LIMIT:
            raise GenError("%s:%d: line longer than %d columns: %s" % (name, n, COLUMN_LIMIT, line))


def write(path, text):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


def main(argv):
    ap = argparse.ArgumentParser(description="Generate Warren's AMQP 0-9-1 codec.")
    ap.add_argument("--spec", required=True, help="AMQP 0-9-1 spec XML (RabbitMQ's extended)")
    ap.add_argument("--out-dir", required=True, help="where to write methods.h and methods.c")
    args = ap.parse_args(argv)
    try:
        classes, constants = load_spec(args.spec)
        spec_name = os.path.basename(args.spec)
        header = gen_header(classes, constants, spec_name)
        source = gen_source(classes, constants, spec_name)
        check_lines("methods.h", header)
        check_lines("methods.c", source)
    except (GenError, ET.ParseError, OSError, ValueError) as e:
        print("gen_codec.py: %s" % e, file=sys.stderr)
        return 1
    write(os.path.join(args.out_dir, "methods.h"), header)
    write(os.path.join(args.out_dir, "methods.c"), source)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
