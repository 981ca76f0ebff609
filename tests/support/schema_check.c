/*
 * schema_check.c — `schema-check`: validate a JSON document (or part of it)
 * against one of our JSON Schemas, with the subset validator in
 * jsonschema.c. Used by the integration tests on live API output.
 *
 *   schema-check SCHEMA.json DOC.json                    the whole document
 *   schema-check SCHEMA.json DOC.json --pointer /services/feeder
 *   schema-check SCHEMA.json DOC.json --each /services   every member
 *
 * DOC.json may be "-" for stdin. Exit 0 when valid; 1 when invalid or a file
 * cannot be read (the reason on stderr); 2 on a usage error.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "support/jsonschema.h"

static void usage(FILE *out)
{
    fprintf(out, "usage: schema-check SCHEMA.json DOC.json [--pointer /json/pointer | --each "
                 "/json/pointer]\n"
                 "  --pointer P  validate the value at JSON Pointer P instead of the whole DOC\n"
                 "  --each P     validate every member of the object (or array) at P\n"
                 "DOC.json may be - for stdin. Exit 0 valid, 1 invalid, 2 usage.\n");
}

static json_t *load(const char *path, const char *what)
{
    json_error_t jerr;
    json_t *v = strcmp(path, "-") == 0 ? json_loadf(stdin, JSON_DECODE_ANY, &jerr)
                                       : json_load_file(path, JSON_DECODE_ANY, &jerr);
    if (v == NULL) {
        fprintf(stderr, "schema-check: cannot read %s %s: %s (line %d, column %d)\n", what, path,
                jerr.text, jerr.line, jerr.column);
    }
    return v;
}

static int check_one(const json_t *schema, const json_t *doc, const char *doc_path,
                     const char *where)
{
    char err[1024];
    if (cq_jsonschema_validate(schema, doc, err, sizeof(err)) != 0) {
        fprintf(stderr, "schema-check: %s%s%s: %s\n", doc_path, where[0] != '\0' ? " at " : "",
                where, err);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *pointer = "";
    bool each = false;
    if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        usage(stdout);
        return 0;
    }
    if (argc == 5 && strcmp(argv[3], "--pointer") == 0) {
        pointer = argv[4];
    } else if (argc == 5 && strcmp(argv[3], "--each") == 0) {
        pointer = argv[4];
        each = true;
    } else if (argc != 3) {
        usage(stderr);
        return 2;
    }
    if (pointer[0] != '\0' && pointer[0] != '/') {
        fprintf(stderr, "schema-check: %s is not a JSON Pointer (it must start with /)\n", pointer);
        return 2;
    }

    int rc = 1;
    json_t *schema = load(argv[1], "schema");
    json_t *doc = schema != NULL ? load(argv[2], "document") : NULL;
    if (doc == NULL) {
        goto out;
    }
    const json_t *target = cq_jsonschema_pointer(doc, pointer);
    if (target == NULL) {
        fprintf(stderr, "schema-check: %s has nothing at %s\n", argv[2], pointer);
        goto out;
    }
    if (!each) {
        rc = check_one(schema, target, argv[2], pointer);
        goto out;
    }
    if (json_is_object(target)) {
        const char *key;
        json_t *member;
        rc = 0;
        if (json_object_size(target) == 0) {
            fprintf(stderr, "schema-check: %s: the object at %s is empty\n", argv[2], pointer);
            rc = 1;
        }
        json_object_foreach((json_t *)target, key, member)
        {
            char where[512];
            snprintf(where, sizeof(where), "%s/%s", pointer, key);
            rc |= check_one(schema, member, argv[2], where);
        }
    } else if (json_is_array(target)) {
        size_t i;
        json_t *member;
        rc = 0;
        json_array_foreach(target, i, member)
        {
            char where[512];
            snprintf(where, sizeof(where), "%s/%zu", pointer, i);
            rc |= check_one(schema, member, argv[2], where);
        }
    } else {
        fprintf(stderr, "schema-check: %s: --each needs an object or array at %s\n", argv[2],
                pointer);
    }
out:
    json_decref(doc);
    json_decref(schema);
    return rc;
}
