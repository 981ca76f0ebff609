/*
 * version.h — what this binary is: its own version (git describe at build
 * time) and the versions of the libraries actually linked, read at run time
 * from each library. Any thread.
 */
#ifndef CQ_VERSION_H
#define CQ_VERSION_H

#include <stdio.h>

#include <jansson.h>

/* "v0.1.0-12-gabcdef0" or the meson project version when built outside git. */
const char *cq_version(void);

/* {"libmicrohttpd":"0.9.75","libcurl":"7.88.1","libwebsockets":"4.1.6",
 *  "jansson":"2.14","openssl":"OpenSSL 3.0.19 …"} (new reference). */
json_t *cq_version_libraries_json(void);

/* `coinquantd --version`: the version line, then one line per library. */
void cq_version_print(FILE *out);

/* Log a service's startup banner (event "service_banner"): service, version,
 * mode, config hash and the thresholds it enforces (stolen; may be NULL). */
void cq_version_log_banner(const char *service, const char *mode, const char *config_hash,
                           json_t *thresholds);

#endif /* CQ_VERSION_H */
