/*
 * version.c — this binary's version (git describe at build time) and the
 * versions of the libraries actually linked, asked of each library at run
 * time (not the headers we compiled against).
 */
#include <curl/curl.h>
#include <jansson.h>
#include <libwebsockets.h>
#include <microhttpd.h>
#include <openssl/crypto.h>

#include "cq/log.h"
#include "cq/version.h"
#include "version-gen.h"

const char *cq_version(void)
{
    return CQ_VERSION_STRING;
}

json_t *cq_version_libraries_json(void)
{
    const curl_version_info_data *curl = curl_version_info(CURLVERSION_NOW);
    return json_pack("{s:s,s:s,s:s,s:s,s:s}", "libmicrohttpd", MHD_get_version(), "libcurl",
                     curl != NULL ? curl->version : "unknown", "libwebsockets",
                     lws_get_library_version(), "jansson", jansson_version_str(), "openssl",
                     OpenSSL_version(OPENSSL_VERSION));
}

void cq_version_print(FILE *out)
{
    fprintf(out, "coinquantd %s\n", cq_version());
    json_t *libs = cq_version_libraries_json();
    const char *name;
    json_t *value;
    json_object_foreach(libs, name, value)
    {
        fprintf(out, "  %-14s %s\n", name, json_string_value(value));
    }
    json_decref(libs);
}

void cq_version_log_banner(const char *service, const char *mode, const char *config_hash,
                           json_t *thresholds)
{
    if (thresholds == NULL) {
        thresholds = json_object();
    }
    cq_log_info(service, "service_banner",
                json_pack("{s:s,s:s,s:s,s:o}", "version", cq_version(), "mode", mode, "config_hash",
                          config_hash, "thresholds", thresholds),
                "%s %s starting in %s mode, config %s", service, cq_version(), mode, config_hash);
}
