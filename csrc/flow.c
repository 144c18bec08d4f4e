/* Flow tuples parsed into columns: the work of normalise.py's group parsers, for the spellings Azure writes.
 *
 * Whatever is unusual (non-ASCII text, signs or blanks around numbers, IPv6 with an embedded IPv4 address,
 * counters for one direction only, one address at both ends) is not decided here: the tuple goes back to
 * the Python reference, which accepts or reports it. So this parser may refuse more than the reference,
 * never less, and what it accepts it reads to the same values.
 */
#include "flow.h"

#include <stdlib.h>
#include <string.h>

/* ASCII digits only, at most max_digits of them (no sign, no blank): the value, or -1. */
static int64_t digits(const char *s, size_t n, size_t max_digits) {
    if (n == 0 || n > max_digits) return -1;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned char)s[i] - '0';
        if (d > 9) return -1;
        v = v * 10 + d;
    }
    return v;
}

/* Dotted quad as ipaddress.IPv4Address accepts it: four decimal octets, no leading zeros, each <= 255. */
static int parse_ipv4(const char *s, size_t n, uint8_t out[4]) {
    size_t i = 0;
    for (int part = 0; part < 4; part++) {
        size_t start = i;
        unsigned v = 0;
        while (i < n && s[i] >= '0' && s[i] <= '9' && i - start < 3) v = v * 10 + (unsigned)(s[i++] - '0');
        size_t len = i - start;
        if (len == 0 || v > 255 || (len > 1 && s[start] == '0')) return 0;
        out[part] = (uint8_t)v;
        if (part < 3) {
            if (i >= n || s[i] != '.') return 0;
            i++;
        }
    }
    return i == n;
}

static int hexval(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* Hex groups with at most one "::" (no embedded IPv4, no zone): a subset of what ipaddress.IPv6Address
 * and inet_pton accept, packed as inet_pton packs it. */
static int parse_ipv6(const char *s, size_t n, uint8_t out[16]) {
    uint16_t groups[8];
    int ngroups = 0, gap = -1;
    size_t i = 0;
    if (n < 2 || n > 39) return 0;
    if (s[0] == ':') {
        if (s[1] != ':') return 0;
        gap = 0;
        i = 2;
        if (i == n) goto done;
    }
    for (;;) {
        size_t start = i;
        unsigned v = 0;
        int h;
        while (i < n && i - start < 4 && (h = hexval(s[i])) >= 0) {
            v = v * 16 + (unsigned)h;
            i++;
        }
        if (i == start || ngroups == 8) return 0;
        groups[ngroups++] = (uint16_t)v;
        if (i == n) break;
        if (s[i] != ':') return 0;
        i++;
        if (i < n && s[i] == ':') {
            if (gap >= 0) return 0;
            gap = ngroups;
            i++;
            if (i == n) break;
        } else if (i == n) {
            return 0; /* a single trailing colon */
        }
    }
done:
    if (gap < 0 ? ngroups != 8 : ngroups > 7) return 0;
    memset(out, 0, 16);
    int tail = gap < 0 ? 0 : ngroups - gap;
    int head = ngroups - tail;
    for (int g = 0; g < head; g++) {
        out[2 * g] = (uint8_t)(groups[g] >> 8);
        out[2 * g + 1] = (uint8_t)groups[g];
    }
    for (int g = 0; g < tail; g++) {
        int at = 8 - tail + g;
        out[2 * at] = (uint8_t)(groups[head + g] >> 8);
        out[2 * at + 1] = (uint8_t)groups[head + g];
    }
    return 1;
}

int nf_parse_tuple(const char *s, size_t n, int layout, nf_tuple *t) {
    const char *f[13];
    size_t len[13];
    size_t want = layout == NF_NSG1 ? 8 : 13, count = 0, start = 0;
    unsigned char high = 0;
    for (size_t i = 0; i < n; i++) high |= (unsigned char)s[i]; /* one vectorised pass: ASCII only */
    if (high & 0x80) return 0;
    for (;;) {
        const char *comma = memchr(s + start, ',', n - start);
        size_t end = comma ? (size_t)(comma - s) : n;
        if (count == want) return 0;
        f[count] = s + start;
        len[count++] = end - start;
        if (comma == NULL) break;
        start = end + 1;
    }
    if (count != want) return 0;
    int vnet = layout == NF_VNET4;
    int64_t ts = digits(f[0], len[0], vnet ? 14 : 11);
    int64_t sport = digits(f[3], len[3], 18), dport = digits(f[4], len[4], 18);
    if (ts < 0 || sport < 0 || sport > 65535 || dport < 0 || dport > 65535) return 0;
    t->ts_ms = vnet ? ts : ts * 1000;
    t->sport = (uint16_t)sport;
    t->dport = (uint16_t)dport;
    /* One address at both ends is a rare shape the reference renders (related.ip holds it once). */
    if (len[1] == len[2] && memcmp(f[1], f[2], len[1]) == 0) return 0;
    if (parse_ipv4(f[1], len[1], t->src_bin)) {
        if (!parse_ipv4(f[2], len[2], t->dst_bin)) return 0;
        t->v6 = 0;
    } else if (parse_ipv6(f[1], len[1], t->src_bin)) {
        if (!parse_ipv6(f[2], len[2], t->dst_bin)) return 0;
        t->v6 = 1;
    } else {
        return 0;
    }
    t->src = f[1];
    t->src_len = len[1];
    t->dst = f[2];
    t->dst_len = len[2];
    if (len[6] != 1 || (f[6][0] != 'I' && f[6][0] != 'O')) return 0;
    t->inbound = f[6][0] == 'I';
    t->enc = "";
    t->enc_len = 0;
    t->state = 0;
    if (vnet) {
        int64_t proto = digits(f[5], len[5], 18);
        if (proto < 0 || proto > 255) return 0;
        /* ICMP's "ports" are its type and code: above 255 the reference reports the tuple. */
        if ((proto == 1 || proto == 58) && (sport > 255 || dport > 255)) return 0;
        t->proto = (uint8_t)proto;
        char state = f[7][0];
        if (len[7] != 1 || (state != 'B' && state != 'C' && state != 'E' && state != 'D')) return 0;
        t->state = state;
        t->allowed = t->state != 'D';
        t->enc = f[8];
        t->enc_len = len[8];
    } else {
        if (len[5] != 1 || (f[5][0] != 'T' && f[5][0] != 'U')) return 0;
        t->proto = f[5][0] == 'T' ? 6 : 17;
        if (len[7] != 1 || (f[7][0] != 'A' && f[7][0] != 'D')) return 0;
        t->allowed = f[7][0] == 'A';
        if (layout == NF_NSG2) {
            char state = f[8][0];
            if (len[8] != 1 || (state != 'B' && state != 'C' && state != 'E')) return 0;
            t->state = state;
        }
    }
    t->has_counters = 0;
    if (layout != NF_NSG1) {
        size_t present = 0;
        for (int k = 0; k < 4; k++) present += len[9 + k] != 0;
        if (present == 4) {
            for (int k = 0; k < 4; k++) {
                t->counters[k] = digits(f[9 + k], len[9 + k], 18);
                if (t->counters[k] < 0) return 0;
            }
            t->has_counters = 1;
        } else if (present) {
            return 0; /* counters for one direction only: a rare shape the reference renders */
        }
    }
    return 1;
}

#define NF_COLUMNS(X)  \
    X(group, 1)        \
    X(index, 1)        \
    X(ts_ms, 1)        \
    X(src_off, 1)      \
    X(dst_off, 1)      \
    X(src_len, 1)      \
    X(dst_len, 1)      \
    X(src_bin, 1)      \
    X(dst_bin, 1)      \
    X(sport, 1)        \
    X(dport, 1)        \
    X(proto, 1)        \
    X(flags, 1)        \
    X(state, 1)        \
    X(variant, 1)      \
    X(counters, 1)

static int grow(void **p, size_t elem, size_t cap) {
    void *q = realloc(*p, elem * cap);
    if (q == NULL) return -1;
    *p = q;
    return 0;
}

int nf_cols_reserve(nf_cols *c, size_t rows) {
    if (rows > SIZE_MAX / 2 - c->n) return -1;
    size_t need = c->n + rows;
    if (need > c->cap) {
        /* The first reservation is the group's own size: thousands of blobs in flight may each hold a batch of a
         * few tuples, and room for 64 rows in every one of them adds up. */
        size_t cap = c->cap ? c->cap : need;
        while (cap < need) cap *= 2;
#define GROW(name, _) \
    if (grow((void **)&c->name, sizeof(*c->name), cap)) return -1;
        NF_COLUMNS(GROW)
#undef GROW
        c->cap = cap;
    }
    /* Two addresses of at most 39 characters per row. */
    size_t text_need = c->text_len + rows * 80;
    if (text_need > c->text_cap) {
        size_t cap = c->text_cap ? c->text_cap : text_need;
        while (cap < text_need) cap *= 2;
        if (grow((void **)&c->text, 1, cap)) return -1;
        c->text_cap = cap;
    }
    return 0;
}

static void push_common(nf_cols *c, uint32_t group, int64_t index) {
    size_t r = c->n;
    c->group[r] = group;
    c->index[r] = index;
    c->ts_ms[r] = 0;
    c->src_off[r] = c->dst_off[r] = 0;
    c->src_len[r] = c->dst_len[r] = 0;
    c->sport[r] = c->dport[r] = 0;
    c->proto[r] = 0;
    c->flags[r] = 0;
    c->state[r] = 0;
    c->variant[r] = 0;
}

int nf_cols_push(nf_cols *c, const nf_tuple *t, uint32_t group, int64_t index, uint16_t variant) {
    if (c->n >= c->cap || t->src_len > 39 || t->dst_len > 39 || c->text_len + 80 > c->text_cap ||
        c->text_len + 80 > UINT32_MAX)
        return -1;
    size_t r = c->n;
    push_common(c, group, index);
    c->ts_ms[r] = t->ts_ms;
    c->src_off[r] = (uint32_t)c->text_len;
    memcpy(c->text + c->text_len, t->src, t->src_len);
    c->text_len += t->src_len;
    c->dst_off[r] = (uint32_t)c->text_len;
    memcpy(c->text + c->text_len, t->dst, t->dst_len);
    c->text_len += t->dst_len;
    c->src_len[r] = (uint8_t)t->src_len;
    c->dst_len[r] = (uint8_t)t->dst_len;
    memcpy(c->src_bin[r], t->src_bin, 16);
    memcpy(c->dst_bin[r], t->dst_bin, 16);
    c->sport[r] = t->sport;
    c->dport[r] = t->dport;
    c->proto[r] = t->proto;
    c->flags[r] = (uint8_t)((t->v6 ? NF_V6 : 0) | (t->inbound ? NF_INBOUND : 0) | (t->allowed ? NF_ALLOWED : 0) |
                            (t->has_counters ? NF_COUNTERS : 0));
    c->state[r] = t->state;
    c->variant[r] = variant;
    memcpy(c->counters[r], t->counters, sizeof(c->counters[r]));
    c->n++;
    return 0;
}

int nf_cols_push_python(nf_cols *c, uint32_t group, int64_t index) {
    if (c->n >= c->cap) return -1;
    push_common(c, group, index);
    c->flags[c->n] = NF_PYTHON;
    c->n++;
    return 0;
}

int nf_cols_copy_row(nf_cols *dst, const nf_cols *src, size_t r, uint32_t group) {
    if (src->flags[r] & NF_PYTHON) return nf_cols_push_python(dst, group, src->index[r]);
    if (dst->n >= dst->cap || dst->text_len + 80 > dst->text_cap || dst->text_len + 80 > UINT32_MAX) return -1;
    size_t w = dst->n;
    push_common(dst, group, src->index[r]);
    dst->ts_ms[w] = src->ts_ms[r];
    dst->src_off[w] = (uint32_t)dst->text_len;
    memcpy(dst->text + dst->text_len, src->text + src->src_off[r], src->src_len[r]);
    dst->text_len += src->src_len[r];
    dst->dst_off[w] = (uint32_t)dst->text_len;
    memcpy(dst->text + dst->text_len, src->text + src->dst_off[r], src->dst_len[r]);
    dst->text_len += src->dst_len[r];
    dst->src_len[w] = src->src_len[r];
    dst->dst_len[w] = src->dst_len[r];
    memcpy(dst->src_bin[w], src->src_bin[r], 16);
    memcpy(dst->dst_bin[w], src->dst_bin[r], 16);
    dst->sport[w] = src->sport[r];
    dst->dport[w] = src->dport[r];
    dst->proto[w] = src->proto[r];
    dst->flags[w] = src->flags[r];
    dst->state[w] = src->state[r];
    dst->variant[w] = src->variant[r];
    memcpy(dst->counters[w], src->counters[r], sizeof(dst->counters[w]));
    dst->n++;
    return 0;
}

void nf_cols_compact(nf_cols *c) {
    size_t w = 0;
    for (size_t r = 0; r < c->n; r++) {
        if (c->flags[r] & NF_DEAD) continue;
        if (w != r) {
            c->group[w] = c->group[r];
            c->index[w] = c->index[r];
            c->ts_ms[w] = c->ts_ms[r];
            c->src_off[w] = c->src_off[r];
            c->dst_off[w] = c->dst_off[r];
            c->src_len[w] = c->src_len[r];
            c->dst_len[w] = c->dst_len[r];
            memcpy(c->src_bin[w], c->src_bin[r], 16);
            memcpy(c->dst_bin[w], c->dst_bin[r], 16);
            c->sport[w] = c->sport[r];
            c->dport[w] = c->dport[r];
            c->proto[w] = c->proto[r];
            c->flags[w] = c->flags[r];
            c->state[w] = c->state[r];
            c->variant[w] = c->variant[r];
            memcpy(c->counters[w], c->counters[r], sizeof(c->counters[w]));
        }
        w++;
    }
    c->n = w;
}

void nf_cols_free(nf_cols *c) {
#define FREE(name, _) free(c->name);
    NF_COLUMNS(FREE)
#undef FREE
    free(c->text);
    memset(c, 0, sizeof(*c));
}

size_t nf_next_span_tuple(const char *text, size_t pos, size_t end, size_t *next) {
    for (size_t i = pos; i + 3 <= end; i++) {
        if (text[i] == '"' && text[i + 1] == ',' && text[i + 2] == '"') {
            *next = i + 3;
            return i - pos;
        }
    }
    *next = end;
    return end - pos;
}

long nf_count_span_tuples(const char *text, size_t start, size_t end) {
    if (end < start + 2 || text[start] != '"' || text[end - 1] != '"') return -1;
    long seps = 0;
    for (size_t i = start + 1; i < end - 1; i++) {
        const char *q = memchr(text + i, '"', end - 1 - i);
        const char *b = memchr(text + i, '\\', (size_t)((q ? q : text + end - 1) - (text + i)));
        if (b != NULL) return -1;
        if (q == NULL) break;
        i = (size_t)(q - text);
        if (i + 2 >= end - 1 || text[i + 1] != ',' || text[i + 2] != '"') return -1;
        seps++;
        i += 2;
    }
    return seps + 1;
}
