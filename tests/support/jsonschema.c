/*
 * jsonschema.c — test support: a JSON Schema (2020-12) validator for the
 * SUBSET of keywords our schemas use; see jsonschema.h for the list. Not a
 * general validator. Two passes: the whole schema is checked first (every
 * keyword known and well-formed, every pattern compiles, every $ref
 * resolves), so an unsupported keyword fails even where the document never
 * reaches it; then the document is validated and the first problem is
 * reported with its JSON Pointer.
 */
#include <regex.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/jsonschema.h"

#define MAX_DEPTH 64
#define PATH_MAX_LEN 512

struct ctx {
    const json_t *root;
    char *err;
    size_t err_len;
};

static int fail(struct ctx *c, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct ctx *c, const char *path, const char *fmt, ...)
{
    if (c->err != NULL && c->err_len > 0) {
        int n = snprintf(c->err, c->err_len, "%s: ", path[0] != '\0' ? path : "(root)");
        if (n >= 0 && (size_t)n < c->err_len) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(c->err + n, c->err_len - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return -1;
}

/* path + "/" + escaped key, into out. */
static void path_join(char *out, size_t out_len, const char *path, const char *key)
{
    size_t used = (size_t)snprintf(out, out_len, "%s/", path);
    for (const char *k = key; *k != '\0' && used + 3 < out_len; k++) {
        if (*k == '~') {
            out[used++] = '~';
            out[used++] = '0';
        } else if (*k == '/') {
            out[used++] = '~';
            out[used++] = '1';
        } else {
            out[used++] = *k;
        }
    }
    if (used < out_len) {
        out[used] = '\0';
    }
}

static void path_index(char *out, size_t out_len, const char *path, size_t i)
{
    snprintf(out, out_len, "%.*s/%zu", PATH_MAX_LEN - 24, path, i);
}

/* A short printable form of a value for messages. */
static void preview(const json_t *v, char *buf, size_t len)
{
    char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    if (s == NULL) {
        snprintf(buf, len, "(value)");
        return;
    }
    if (strlen(s) > 60) {
        snprintf(buf, len, "%.57s...", s);
    } else {
        snprintf(buf, len, "%s", s);
    }
    free(s);
}

const json_t *cq_jsonschema_pointer(const json_t *doc, const char *pointer)
{
    if (doc == NULL || pointer == NULL) {
        return NULL;
    }
    if (pointer[0] == '\0') {
        return doc;
    }
    if (pointer[0] != '/') {
        return NULL;
    }
    const json_t *cur = doc;
    const char *p = pointer + 1;
    for (;;) {
        char token[256];
        size_t n = 0;
        while (*p != '\0' && *p != '/') {
            char ch = *p++;
            if (ch == '~') {
                if (*p == '0') {
                    ch = '~';
                } else if (*p == '1') {
                    ch = '/';
                } else {
                    return NULL;
                }
                p++;
            }
            if (n + 1 >= sizeof(token)) {
                return NULL;
            }
            token[n++] = ch;
        }
        token[n] = '\0';
        if (json_is_object(cur)) {
            cur = json_object_get(cur, token);
        } else if (json_is_array(cur)) {
            char *end = NULL;
            if (n == 0 || (n > 1 && token[0] == '0')) {
                return NULL;
            }
            unsigned long idx = strtoul(token, &end, 10);
            if (end == NULL || *end != '\0') {
                return NULL;
            }
            cur = json_array_get(cur, idx);
        } else {
            return NULL;
        }
        if (cur == NULL) {
            return NULL;
        }
        if (*p == '\0') {
            return cur;
        }
        p++; /* skip '/' */
    }
}

/* ---- pass 1: the schema is inside the subset ------------------------------------ */

static const char *const type_names[] = {
    "null", "boolean", "object", "array", "number", "integer", "string",
};

static bool type_name_ok(const char *s)
{
    for (size_t i = 0; i < sizeof(type_names) / sizeof(type_names[0]); i++) {
        if (strcmp(s, type_names[i]) == 0) {
            return true;
        }
    }
    return false;
}

static bool is_annotation(const char *key)
{
    static const char *const names[] = {
        "$schema", "$id",        "$comment", "title",     "description", "examples",
        "default", "deprecated", "readOnly", "writeOnly", "format",
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(key, names[i]) == 0) {
            return true;
        }
    }
    return false;
}

static const json_t *resolve_ref(struct ctx *c, const char *ref)
{
    if (strncmp(ref, "#/$defs/", 8) != 0) {
        return NULL;
    }
    return cq_jsonschema_pointer(c->root, ref + 1);
}

static bool is_nonneg_integer(const json_t *v)
{
    return json_is_integer(v) && json_integer_value(v) >= 0;
}

static int check_schema(struct ctx *c, const json_t *schema, const char *spath, int depth);

static int check_schema_map(struct ctx *c, const json_t *map, const char *spath, int depth)
{
    const char *key;
    json_t *sub;
    char sub_path[PATH_MAX_LEN];
    if (!json_is_object(map)) {
        return fail(c, spath, "schema error: must be an object of schemas");
    }
    json_object_foreach((json_t *)map, key, sub)
    {
        path_join(sub_path, sizeof(sub_path), spath, key);
        if (check_schema(c, sub, sub_path, depth + 1) < 0) {
            return -1;
        }
    }
    return 0;
}

static int check_keyword(struct ctx *c, const char *key, const json_t *v, const char *kpath,
                         int depth)
{
    if (is_annotation(key)) {
        if (strcmp(key, "examples") == 0 && !json_is_array(v)) {
            return fail(c, kpath, "schema error: examples must be an array");
        }
        if (strcmp(key, "format") == 0 && !json_is_string(v)) {
            return fail(c, kpath, "schema error: format must be a string");
        }
        return 0;
    }
    if (strcmp(key, "$defs") == 0 || strcmp(key, "properties") == 0) {
        return check_schema_map(c, v, kpath, depth);
    }
    if (strcmp(key, "$ref") == 0) {
        if (!json_is_string(v)) {
            return fail(c, kpath, "schema error: $ref must be a string");
        }
        if (resolve_ref(c, json_string_value(v)) == NULL) {
            return fail(c, kpath,
                        "schema error: $ref \"%s\" does not resolve (only \"#/$defs/...\" "
                        "is supported)",
                        json_string_value(v));
        }
        return 0;
    }
    if (strcmp(key, "type") == 0) {
        if (json_is_string(v)) {
            if (!type_name_ok(json_string_value(v))) {
                return fail(c, kpath, "schema error: unknown type \"%s\"", json_string_value(v));
            }
            return 0;
        }
        if (!json_is_array(v) || json_array_size(v) == 0) {
            return fail(c, kpath, "schema error: type must be a name or a non-empty array");
        }
        size_t i;
        json_t *t;
        json_array_foreach(v, i, t)
        {
            if (!json_is_string(t) || !type_name_ok(json_string_value(t))) {
                return fail(c, kpath, "schema error: element %zu is not a type name", i);
            }
        }
        return 0;
    }
    if (strcmp(key, "required") == 0) {
        size_t i;
        json_t *r;
        if (!json_is_array(v)) {
            return fail(c, kpath, "schema error: required must be an array of names");
        }
        json_array_foreach(v, i, r)
        {
            if (!json_is_string(r)) {
                return fail(c, kpath, "schema error: element %zu is not a string", i);
            }
        }
        return 0;
    }
    if (strcmp(key, "additionalProperties") == 0 || strcmp(key, "items") == 0) {
        return check_schema(c, v, kpath, depth + 1);
    }
    if (strcmp(key, "enum") == 0) {
        if (!json_is_array(v)) {
            return fail(c, kpath, "schema error: enum must be an array");
        }
        return 0;
    }
    if (strcmp(key, "const") == 0) {
        return 0;
    }
    if (strcmp(key, "pattern") == 0) {
        regex_t re;
        if (!json_is_string(v)) {
            return fail(c, kpath, "schema error: pattern must be a string");
        }
        int rc = regcomp(&re, json_string_value(v), REG_EXTENDED | REG_NOSUB);
        if (rc != 0) {
            char msg[128];
            regerror(rc, &re, msg, sizeof(msg));
            return fail(c, kpath, "schema error: pattern does not compile as POSIX ERE: %s", msg);
        }
        regfree(&re);
        return 0;
    }
    if (strcmp(key, "minimum") == 0 || strcmp(key, "maximum") == 0) {
        if (!json_is_number(v)) {
            return fail(c, kpath, "schema error: %s must be a number", key);
        }
        return 0;
    }
    if (strcmp(key, "minLength") == 0 || strcmp(key, "maxLength") == 0) {
        if (!is_nonneg_integer(v)) {
            return fail(c, kpath, "schema error: %s must be a non-negative integer", key);
        }
        return 0;
    }
    return fail(c, kpath,
                "schema error: unsupported keyword \"%s\" (tests/support/jsonschema.c "
                "implements a subset; extend it or avoid the keyword)",
                key);
}

static int check_schema(struct ctx *c, const json_t *schema, const char *spath, int depth)
{
    if (depth > MAX_DEPTH) {
        return fail(c, spath, "schema error: nested more than %d levels", MAX_DEPTH);
    }
    if (json_is_boolean(schema)) {
        return 0;
    }
    if (!json_is_object(schema)) {
        return fail(c, spath, "schema error: a schema must be an object or a boolean");
    }
    const char *key;
    json_t *v;
    char kpath[PATH_MAX_LEN];
    json_object_foreach((json_t *)schema, key, v)
    {
        path_join(kpath, sizeof(kpath), spath, key);
        if (check_keyword(c, key, v, kpath, depth) < 0) {
            return -1;
        }
    }
    return 0;
}

/* ---- pass 2: the document ------------------------------------------------------- */

static bool is_integral(const json_t *v)
{
    if (json_is_integer(v)) {
        return true;
    }
    if (!json_is_real(v)) {
        return false;
    }
    double d = json_real_value(v);
    return d >= -9.0e18 && d <= 9.0e18 && d == (double)(long long)d;
}

static bool type_matches(const char *type, const json_t *v)
{
    if (strcmp(type, "null") == 0) {
        return json_is_null(v);
    }
    if (strcmp(type, "boolean") == 0) {
        return json_is_boolean(v);
    }
    if (strcmp(type, "object") == 0) {
        return json_is_object(v);
    }
    if (strcmp(type, "array") == 0) {
        return json_is_array(v);
    }
    if (strcmp(type, "number") == 0) {
        return json_is_number(v);
    }
    if (strcmp(type, "integer") == 0) {
        return is_integral(v);
    }
    if (strcmp(type, "string") == 0) {
        return json_is_string(v);
    }
    return false;
}

static const char *type_of(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
        return "integer";
    case JSON_REAL:
        return "number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "boolean";
    case JSON_NULL:
    default:
        return "null";
    }
}

/* a < b: -1, a == b: 0, a > b: 1 (exact for two integers). */
static int num_cmp(const json_t *a, const json_t *b)
{
    if (json_is_integer(a) && json_is_integer(b)) {
        json_int_t x = json_integer_value(a), y = json_integer_value(b);
        return x < y ? -1 : x > y;
    }
    double x = json_number_value(a), y = json_number_value(b);
    return x < y ? -1 : x > y;
}

static size_t utf8_code_points(const char *s)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if ((*p & 0xC0) != 0x80) {
            n++;
        }
    }
    return n;
}

static int validate(struct ctx *c, const json_t *schema, const json_t *doc, const char *dpath,
                    int depth);

static int validate_type(struct ctx *c, const json_t *type, const json_t *doc, const char *dpath)
{
    char want[160];
    if (json_is_string(type)) {
        if (type_matches(json_string_value(type), doc)) {
            return 0;
        }
        snprintf(want, sizeof(want), "%s", json_string_value(type));
    } else {
        size_t i;
        json_t *t;
        json_array_foreach(type, i, t)
        {
            if (type_matches(json_string_value(t), doc)) {
                return 0;
            }
        }
        preview(type, want, sizeof(want));
    }
    return fail(c, dpath, "expected type %s, got %s", want, type_of(doc));
}

static int validate_string(struct ctx *c, const json_t *schema, const json_t *doc,
                           const char *dpath)
{
    const char *s = json_string_value(doc);
    size_t len = utf8_code_points(s);
    const json_t *min_len = json_object_get(schema, "minLength");
    const json_t *max_len = json_object_get(schema, "maxLength");
    const json_t *v = json_object_get(schema, "pattern");
    char shown[80];
    if (min_len != NULL && len < (size_t)json_integer_value(min_len)) {
        return fail(c, dpath, "string of %zu characters is shorter than minLength %lld", len,
                    (long long)json_integer_value(min_len));
    }
    if (max_len != NULL && len > (size_t)json_integer_value(max_len)) {
        return fail(c, dpath, "string of %zu characters is longer than maxLength %lld", len,
                    (long long)json_integer_value(max_len));
    }
    if (v != NULL) {
        regex_t re;
        if (regcomp(&re, json_string_value(v), REG_EXTENDED | REG_NOSUB) != 0) {
            return fail(c, dpath, "schema error: pattern does not compile");
        }
        int rc = regexec(&re, s, 0, NULL, 0);
        regfree(&re);
        if (rc != 0) {
            preview(doc, shown, sizeof(shown));
            return fail(c, dpath, "%s does not match pattern %s", shown, json_string_value(v));
        }
    }
    return 0;
}

static int validate_number(struct ctx *c, const json_t *schema, const json_t *doc,
                           const char *dpath)
{
    const json_t *min = json_object_get(schema, "minimum");
    const json_t *max = json_object_get(schema, "maximum");
    char shown[80], bound[80];
    if (min != NULL && num_cmp(doc, min) < 0) {
        preview(doc, shown, sizeof(shown));
        preview(min, bound, sizeof(bound));
        return fail(c, dpath, "%s is less than minimum %s", shown, bound);
    }
    if (max != NULL && num_cmp(doc, max) > 0) {
        preview(doc, shown, sizeof(shown));
        preview(max, bound, sizeof(bound));
        return fail(c, dpath, "%s is greater than maximum %s", shown, bound);
    }
    return 0;
}

static int validate_object(struct ctx *c, const json_t *schema, const json_t *doc,
                           const char *dpath, int depth)
{
    json_t *required = json_object_get(schema, "required");
    json_t *props = json_object_get(schema, "properties");
    json_t *additional = json_object_get(schema, "additionalProperties");
    char sub_path[PATH_MAX_LEN];
    size_t i;
    json_t *r;
    json_array_foreach(required, i, r)
    {
        if (json_object_get(doc, json_string_value(r)) == NULL) {
            return fail(c, dpath, "required property \"%s\" is missing", json_string_value(r));
        }
    }
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)doc, key, value)
    {
        path_join(sub_path, sizeof(sub_path), dpath, key);
        json_t *sub = json_object_get(props, key);
        if (sub != NULL) {
            if (validate(c, sub, value, sub_path, depth + 1) < 0) {
                return -1;
            }
        } else if (json_is_false(additional)) {
            return fail(c, sub_path,
                        "property \"%s\" is not allowed (additionalProperties "
                        "is false)",
                        key);
        } else if (json_is_object(additional)) {
            if (validate(c, additional, value, sub_path, depth + 1) < 0) {
                return -1;
            }
        }
    }
    return 0;
}

static int validate(struct ctx *c, const json_t *schema, const json_t *doc, const char *dpath,
                    int depth)
{
    char shown[80];
    if (depth > MAX_DEPTH) {
        return fail(c, dpath, "schema error: $ref nesting deeper than %d (a cycle?)", MAX_DEPTH);
    }
    if (json_is_true(schema)) {
        return 0;
    }
    if (json_is_false(schema)) {
        return fail(c, dpath, "no value is allowed here (schema false)");
    }
    const json_t *ref = json_object_get(schema, "$ref");
    const json_t *type = json_object_get(schema, "type");
    const json_t *choices = json_object_get(schema, "enum");
    const json_t *constant = json_object_get(schema, "const");
    const json_t *items = json_object_get(schema, "items");
    if (ref != NULL) {
        const json_t *target = resolve_ref(c, json_string_value(ref));
        if (target == NULL) {
            return fail(c, dpath, "schema error: unresolved $ref");
        }
        if (validate(c, target, doc, dpath, depth + 1) < 0) {
            return -1;
        }
    }
    if (type != NULL && validate_type(c, type, doc, dpath) < 0) {
        return -1;
    }
    if (choices != NULL) {
        bool found = false;
        size_t i;
        json_t *e;
        json_array_foreach(choices, i, e)
        {
            if (json_equal((json_t *)doc, e)) {
                found = true;
                break;
            }
        }
        if (!found) {
            char listed[160];
            preview(doc, shown, sizeof(shown));
            preview(choices, listed, sizeof(listed));
            return fail(c, dpath, "%s is not one of %s", shown, listed);
        }
    }
    if (constant != NULL && !json_equal((json_t *)doc, (json_t *)constant)) {
        char want[80];
        preview(doc, shown, sizeof(shown));
        preview(constant, want, sizeof(want));
        return fail(c, dpath, "%s is not the constant %s", shown, want);
    }
    if (json_is_string(doc) && validate_string(c, schema, doc, dpath) < 0) {
        return -1;
    }
    if (json_is_number(doc) && validate_number(c, schema, doc, dpath) < 0) {
        return -1;
    }
    if (json_is_object(doc) && validate_object(c, schema, doc, dpath, depth) < 0) {
        return -1;
    }
    if (json_is_array(doc) && items != NULL) {
        size_t i;
        json_t *item;
        char sub_path[PATH_MAX_LEN];
        json_array_foreach(doc, i, item)
        {
            path_index(sub_path, sizeof(sub_path), dpath, i);
            if (validate(c, items, item, sub_path, depth + 1) < 0) {
                return -1;
            }
        }
    }
    return 0;
}

int cq_jsonschema_validate(const json_t *schema, const json_t *doc, char *err, size_t err_len)
{
    struct ctx c = {schema, err, err_len};
    if (err != NULL && err_len > 0) {
        err[0] = '\0';
    }
    if (schema == NULL || doc == NULL) {
        return fail(&c, "", "%s is missing", schema == NULL ? "the schema" : "the document");
    }
    if (check_schema(&c, schema, "schema#", 0) < 0) {
        return -1;
    }
    return validate(&c, schema, doc, "", 0);
}
