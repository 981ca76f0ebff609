/*
 * jsonschema.h — test support: a small JSON Schema (draft 2020-12) validator
 * for the subset of keywords coinquant's own schemas use (openapi/schemas/).
 * It is NOT a general validator: a schema using any other keyword is
 * rejected as a schema error, so a schema cannot silently outgrow it.
 *
 * Supported: type (a name or an array of names), required, properties,
 * additionalProperties (boolean or schema), enum, const, pattern (POSIX ERE
 * via <regex.h>, unanchored like ECMA-262: use ^…$), minimum, maximum,
 * minLength, maxLength (in code points), items (one schema), $ref to
 * "#/$defs/…" (JSON Pointer into the root schema), $defs, boolean schemas.
 * Annotations accepted and ignored: $schema, $id, $comment, title,
 * description, examples, default, deprecated, readOnly, writeOnly and
 * format (an annotation in 2020-12 unless a vocabulary asserts it).
 *
 * Used by the unit tests and tests/support/schema_check.c. Reentrant.
 */
#ifndef CQ_TEST_JSONSCHEMA_H
#define CQ_TEST_JSONSCHEMA_H

#include <stddef.h>

#include <jansson.h>

/* Validate doc against schema. Returns 0 when valid; -1 when doc is invalid
 * or the schema itself is outside the subset, with the JSON Pointer of the
 * offending place and the reason in err (e.g. "/status: \"bogus\" is not one
 * of [\"starting\",\"ok\",…]"; schema problems start with "schema "). */
int cq_jsonschema_validate(const json_t *schema, const json_t *doc, char *err, size_t err_len);

/* Resolve a JSON Pointer (RFC 6901: "" is the whole document, "/a/0/b~1c")
 * inside doc. Returns a borrowed value, or NULL when nothing is there. */
const json_t *cq_jsonschema_pointer(const json_t *doc, const char *pointer);

#endif /* CQ_TEST_JSONSCHEMA_H */
