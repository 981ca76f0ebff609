/*
 * auth.c — the admin API's bearer token: checking a presented
 * "Authorization: Bearer <token>" header in constant time, and loading (or
 * creating) DATA_DIR/admin.token.
 *
 * Comparison: both the presented token and ours are hashed with SHA-256 and
 * the digests compared with CRYPTO_memcmp, so the time taken depends neither
 * on where the first differing byte is nor on our token's length; a length
 * mismatch is folded into the same result without an early exit.
 *
 * The token's value is never logged and never put in an error message.
 * Reentrant; any thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "api-int.h"
#include "cq/fs.h"
#include "cq/text.h"

#define TOKEN_FILE "admin.token"
#define TOKEN_RANDOM_BYTES 32
#define TOKEN_FILE_MAX_BYTES 4096

static bool sha256(const char *data, size_t len, unsigned char out[32])
{
    unsigned int out_len = 0;
    return EVP_Digest(data, len, out, &out_len, EVP_sha256(), NULL) == 1 && out_len == 32;
}

enum cq_api_auth_result cq_api__auth_check(const char *authorization, const char *token)
{
    if (token == NULL || token[0] == '\0') {
        return CQ_API_AUTH_NO_TOKEN;
    }
    if (authorization == NULL || authorization[0] == '\0') {
        return CQ_API_AUTH_MISSING;
    }
    /* credentials = auth-scheme 1*SP token68 (RFC 7235); scheme is
     * case-insensitive. Surrounding whitespace is tolerated. */
    const char *p = authorization;
    while (*p == ' ' || *p == '\t') {
        p++;
    }
    if (strncasecmp(p, "Bearer", 6) != 0 || (p[6] != ' ' && p[6] != '\t')) {
        return CQ_API_AUTH_SCHEME;
    }
    p += 6;
    while (*p == ' ' || *p == '\t') {
        p++;
    }
    size_t len = strnlen(p, CQ_API_AUTHZ_MAX + 1);
    while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t')) {
        len--;
    }
    if (len == 0) {
        return CQ_API_AUTH_SCHEME;
    }
    if (len > CQ_API_AUTHZ_MAX) {
        return CQ_API_AUTH_MISMATCH;
    }
    size_t token_len = strlen(token);
    unsigned char want[32], got[32];
    if (!sha256(token, token_len, want) || !sha256(p, len, got)) {
        return CQ_API_AUTH_MISMATCH; /* fail closed */
    }
    /* Both terms are always computed: no early exit on a length mismatch. */
    int differ = CRYPTO_memcmp(want, got, sizeof(want)) != 0;
    differ |= (len != token_len);
    return differ ? CQ_API_AUTH_MISMATCH : CQ_API_AUTH_OK;
}

bool cq_api_auth_ok(const char *authorization, const char *token)
{
    return cq_api__auth_check(authorization, token) == CQ_API_AUTH_OK;
}

/* ---- DATA_DIR/admin.token ------------------------------------------------------ */

static bool token_char_ok(unsigned char c)
{
    return c >= 0x21 && c <= 0x7e; /* printable ASCII, no space */
}

static int write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Create path with O_EXCL and a fresh token. -CQ_EEXIST if another process
 * created it first (the caller then loads that one). */
static int token_create(const char *path, char *token_out, size_t token_len, struct cq_err *err)
{
    unsigned char raw[TOKEN_RANDOM_BYTES];
    char hex[2 * TOKEN_RANDOM_BYTES + 2];

    if (token_len < 2 * TOKEN_RANDOM_BYTES + 1) {
        return cq_err_set(err, CQ_EINVAL, 0, "pass a buffer of at least 65 bytes",
                          "token buffer too small (%zu bytes)", token_len);
    }
    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        return cq_err_set(err, CQ_EIO, 0, "check the OS random source (/dev/urandom)",
                          "cannot generate a random admin token: RAND_bytes failed");
    }
    cq_text_hex_encode(raw, sizeof(raw), hex);
    OPENSSL_cleanse(raw, sizeof(raw));
    hex[2 * TOKEN_RANDOM_BYTES] = '\n';
    hex[2 * TOKEN_RANDOM_BYTES + 1] = '\0';

    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        int e = errno;
        OPENSSL_cleanse(hex, sizeof(hex));
        if (e == EEXIST) {
            return -CQ_EEXIST;
        }
        return cq_err_set(err, CQ_EIO, e, "check that DATA_DIR exists and is writable",
                          "cannot create %s", path);
    }
    if (write_all(fd, hex, 2 * TOKEN_RANDOM_BYTES + 1) != 0 || fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(path);
        OPENSSL_cleanse(hex, sizeof(hex));
        return cq_err_set(err, CQ_EIO, e, "check free disk space", "cannot write %s", path);
    }
    if (close(fd) != 0) {
        int e = errno;
        unlink(path);
        OPENSSL_cleanse(hex, sizeof(hex));
        return cq_err_set(err, CQ_EIO, e, "check the disk", "cannot write %s", path);
    }
    memcpy(token_out, hex, 2 * TOKEN_RANDOM_BYTES);
    token_out[2 * TOKEN_RANDOM_BYTES] = '\0';
    OPENSSL_cleanse(hex, sizeof(hex));
    return 0;
}

/* path, or "the file named above" when path would not fit a hint whole
 * (a cut path names another file; the error message names it whole). */
static const char *path_for_hint(const char *path, size_t max_bytes)
{
    return strlen(path) <= max_bytes ? path : "the file named above";
}

/* -CQ_ENOTFOUND when path does not exist. */
static int token_load(const char *path, char *token_out, size_t token_len, struct cq_err *err)
{
    /* O_NONBLOCK: a FIFO planted here must not block the start (fstat below
     * refuses anything but a regular file). */
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT) {
            return -CQ_ENOTFOUND;
        }
        if (e == ELOOP) {
            return cq_err_set(err, CQ_EPERM, 0,
                              "replace the symbolic link with a regular file (mode 0600)",
                              "%s is a symbolic link; refusing to read the admin token "
                              "through it",
                              path);
        }
        return cq_err_set(err, CQ_EIO, e, "check the permissions of DATA_DIR", "cannot open %s",
                          path);
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return cq_err_set(err, CQ_EIO, e, NULL, "cannot stat %s", path);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return cq_err_set(err, CQ_EPERM, 0, "remove it so a token file can be created",
                          "%s is not a regular file", path);
    }
    /* Another user's file in a shared data directory is not our token. */
    int own_rc = cq_fs_check_owned(path, &st, false, err);
    if (own_rc < 0) {
        close(fd);
        return own_rc;
    }
    if ((st.st_mode & 077) != 0) {
        char hint[CQ_ERR_HINT_MAX];
        close(fd);
        /* fits: "chmod 600 " + at most 200 bytes < CQ_ERR_HINT_MAX */
        snprintf(hint, sizeof(hint), "chmod 600 %.200s", path_for_hint(path, 200));
        return cq_err_set(err, CQ_EPERM, 0, hint,
                          "%s is accessible by group or others (mode %04o); the admin "
                          "token must be private to its owner",
                          path, (unsigned)(st.st_mode & 07777));
    }
    if (st.st_size > TOKEN_FILE_MAX_BYTES) {
        close(fd);
        return cq_err_set(err, CQ_EPARSE, 0,
                          "delete it to have a new token generated, or write one token "
                          "into it",
                          "%s is %lld bytes: too large to be an admin token file", path,
                          (long long)st.st_size);
    }
    char buf[TOKEN_FILE_MAX_BYTES + 1];
    size_t got = 0;
    for (;;) {
        ssize_t n = read(fd, buf + got, sizeof(buf) - 1 - got);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            int e = errno;
            close(fd);
            return cq_err_set(err, CQ_EIO, e, NULL, "cannot read %s", path);
        }
        if (n == 0) {
            break;
        }
        got += (size_t)n;
        if (got >= sizeof(buf) - 1) {
            break;
        }
    }
    close(fd);

    /* fits: 7 + at most 120 + 100 fixed bytes + two 3-digit numbers < 256 */
    char fix[CQ_ERR_HINT_MAX];
    snprintf(fix, sizeof(fix),
             "delete %.120s to have a new token generated, or write one token of %d to %d "
             "printable characters (no spaces) into it",
             path_for_hint(path, 120), CQ_API_TOKEN_MIN, CQ_API_TOKEN_MAX);

    /* One token, optionally surrounded by whitespace (a trailing newline). */
    size_t start = 0, end = got;
    while (start < end &&
           (buf[start] == ' ' || buf[start] == '\t' || buf[start] == '\n' || buf[start] == '\r')) {
        start++;
    }
    while (end > start && (buf[end - 1] == ' ' || buf[end - 1] == '\t' || buf[end - 1] == '\n' ||
                           buf[end - 1] == '\r')) {
        end--;
    }
    size_t len = end - start;
    int rc = 0;
    if (len == 0) {
        rc = cq_err_set(err, CQ_EPARSE, 0, fix, "%s is empty: it holds no admin token", path);
    } else if (len < CQ_API_TOKEN_MIN || len > CQ_API_TOKEN_MAX) {
        rc = cq_err_set(err, CQ_EPARSE, 0, fix,
                        "%s holds a token of %zu characters; %d to %d are accepted", path, len,
                        CQ_API_TOKEN_MIN, CQ_API_TOKEN_MAX);
    } else {
        for (size_t i = start; i < end; i++) {
            if (!token_char_ok((unsigned char)buf[i])) {
                rc = cq_err_set(err, CQ_EPARSE, 0, fix,
                                "%s is not a token file: byte %zu is not a printable "
                                "ASCII character",
                                path, i);
                break;
            }
        }
    }
    if (rc == 0 && len + 1 > token_len) {
        rc = cq_err_set(err, CQ_ETOOBIG, 0, "pass a larger token buffer",
                        "the token in %s (%zu characters) does not fit the %zu-byte buffer", path,
                        len, token_len);
    }
    if (rc == 0) {
        memcpy(token_out, buf + start, len);
        token_out[len] = '\0';
    }
    OPENSSL_cleanse(buf, sizeof(buf));
    return rc;
}

int cq_api_token_load_or_create(const char *data_dir, char *token_out, size_t token_len,
                                bool *created, struct cq_err *err)
{
    char path[4096];
    if (created != NULL) {
        *created = false;
    }
    if (data_dir == NULL || data_dir[0] == '\0' || token_out == NULL || token_len == 0) {
        return cq_err_set(err, CQ_EINVAL, 0, "set CQ_DATA_DIR",
                          "no data directory given for the admin token");
    }
    token_out[0] = '\0';
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", data_dir, TOKEN_FILE) >= sizeof(path)) {
        return cq_err_set(err, CQ_ETOOBIG, 0, "use a shorter CQ_DATA_DIR",
                          "data directory path too long");
    }
    int rc = cq_fs_mkdir_p(data_dir, 0700, err);
    if (rc < 0) {
        return rc;
    }
    /* Two rounds: if another process creates the file between our load and
     * our O_EXCL create, the second round loads its token. */
    for (int round = 0; round < 2; round++) {
        rc = token_load(path, token_out, token_len, err);
        if (rc != -CQ_ENOTFOUND) {
            return rc;
        }
        rc = token_create(path, token_out, token_len, err);
        if (rc == 0) {
            if (created != NULL) {
                *created = true;
            }
            return 0;
        }
        if (rc != -CQ_EEXIST) {
            return rc;
        }
    }
    return cq_err_set(err, CQ_EIO, 0, "retry; check nothing else is rewriting DATA_DIR",
                      "%s appears and disappears while being read", path);
}
