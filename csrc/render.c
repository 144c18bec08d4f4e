/* Events rendered from columns: the same bytes as the fast paths of forwarder/formats/{ecs,cef,ocsf,asim}.py.
 *
 * Everything that depends on the rule group, the flow state and the encryption is rendered by the Python
 * formatters (from the same caches their own fast paths use) and handed over as pieces; this code only
 * splices the per-tuple values between them. Piece layouts, by format:
 *   ECS   g: src_in, dst_in, src_out, dst_out, tail    gv: head_allowed, head_denied, flowlog_end
 *         glob: network members by protocol number, IPv4 [0, 256) then IPv6 [256, 512)
 *   CEF   g: head_denied, head_allowed                 gv: tail_outbound, tail_inbound
 *         glob: protocol names [0, 256)
 *   OCSF  g: middle_outbound, middle_inbound, mac      gv: tail, head_denied, head_allowed
 *         glob: connection_info protocol members, IPv4 [0, 256) then IPv6 [256, 512)
 *   ASIM  g: columns (up to EventOriginalUid's value), nic_outbound, nic_inbound, additional_fields_open
 *         gv: head_denied, head_allowed, tail (FlowState, Encryption and the closing braces)
 *         glob: NetworkProtocol / NetworkProtocolVersion members, IPv4 [0, 256) then IPv6 [256, 512);
 *               NetworkIcmpType up to NetworkIcmpCode's value by type, ICMP [512, 768) then IPv6-ICMP
 *               [768, 1024); AdditionalFields.ProtocolNumber (empty for a protocol with a keyword) [1024, 1280)
 */
#include <stdlib.h>
#include <string.h>

#include "flow.h"

int nf_buf_reserve(nf_buf *b, size_t more) {
    if (more > SIZE_MAX / 4 - b->n) return -1;
    if (b->n + more <= b->cap) return 0;
    if (b->fixed) return -1;
    size_t cap = b->cap ? b->cap : 1 << 16;
    while (cap < b->n + more) cap *= 2;
    char *p = realloc(b->p, cap);
    if (p == NULL) return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

/* Pieces of unknown length go through the C library's memcpy (vectorised): called through a volatile pointer,
 * because GCC otherwise expands it inline as "rep movsq", measured 8-10% slower over a whole conversion. */
static void *(*const volatile copy)(void *, const void *, size_t) = memcpy;

/* Unchecked appends: the row's room was reserved at once. */
static inline char *put(char *o, const char *s, size_t n) {
    copy(o, s, n);
    return o + n;
}

/* Literals: a constant length the compiler copies with a few moves. */
#define PUTS(o, lit) (memcpy((o), (lit), sizeof(lit) - 1), (o) + sizeof(lit) - 1)
#define PUTP(o, piece) put((o), (piece).p, (piece).n)

static const char DIGIT_PAIRS[201] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

/* Decimal, two digits per division: ports, counters and ids are most of a line's numbers. */
static inline char *put_u64(char *o, uint64_t v) {
    char tmp[20];
    int n = 20;
    while (v >= 100) {
        unsigned pair = (unsigned)(v % 100);
        v /= 100;
        tmp[--n] = DIGIT_PAIRS[2 * pair + 1];
        tmp[--n] = DIGIT_PAIRS[2 * pair];
    }
    if (v >= 10) {
        tmp[--n] = DIGIT_PAIRS[2 * v + 1];
        tmp[--n] = DIGIT_PAIRS[2 * v];
    } else {
        tmp[--n] = (char)('0' + v);
    }
    memcpy(o, tmp + n, (size_t)(20 - n));
    return o + (20 - n);
}

static inline char *put_2(char *o, unsigned v) {
    *o++ = (char)('0' + v / 10);
    *o++ = (char)('0' + v % 10);
    return o;
}

/* 'YYYY-MM-DDTHH:MM:SS.' for seconds since the epoch (ecs._second_head; Hinnant's days-to-civil). */
static char *put_second(char *o, int64_t sec) {
    int64_t minute = sec / 60, second = sec % 60;
    int64_t days = minute / 1440, rem = minute % 1440;
    int64_t z = days + 719468;
    int64_t era = z / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t day = doy - (153 * mp + 2) / 5 + 1;
    int64_t month = mp < 10 ? mp + 3 : mp - 9;
    int64_t year = yoe + era * 400 + (month <= 2);
    if (year < 1000) { /* {year:04d} */
        *o++ = (char)('0' + year / 1000);
        *o++ = (char)('0' + year / 100 % 10);
        o = put_2(o, (unsigned)(year % 100));
    } else {
        o = put_u64(o, (uint64_t)year);
    }
    *o++ = '-';
    o = put_2(o, (unsigned)month);
    *o++ = '-';
    o = put_2(o, (unsigned)day);
    *o++ = 'T';
    o = put_2(o, (unsigned)(rem / 60));
    *o++ = ':';
    o = put_2(o, (unsigned)(rem % 60));
    *o++ = ':';
    o = put_2(o, (unsigned)second);
    *o++ = '.';
    return o;
}

/* 'YYYY-MM-DDTHH:MM:SS.mmmZ' (ecs.iso_timestamp): tuples of a batch share few seconds, so the last is kept. */
static char *put_iso(char *o, int64_t ms, nf_scratch *sc) {
    int64_t sec = ms / 1000, milli = ms % 1000;
    if (sc->iso_len == 0 || sec != sc->last_sec) {
        sc->iso_len = (size_t)(put_second(sc->iso, sec) - sc->iso);
        sc->last_sec = sec;
    }
    o = put(o, sc->iso, sc->iso_len);
    *o++ = (char)('0' + milli / 100);
    o = put_2(o, (unsigned)(milli % 100));
    *o++ = 'Z';
    return o;
}

/* The row's Community ID, from the cache when its flow was seen before in this call. */
static const char *cid_of(const nf_cols *c, size_t r, nf_scratch *sc, char own[NF_CID_LEN]) {
    int v6 = c->flags[r] & NF_V6;
    if (sc->cid == NULL) {
        nf_community_id(c->src_bin[r], c->dst_bin[r], v6, c->proto[r], c->sport[r], c->dport[r], own);
        return own;
    }
    uint8_t key[40];
    memcpy(key, c->src_bin[r], 16);
    memcpy(key + 16, c->dst_bin[r], 16);
    key[32] = (uint8_t)(c->sport[r] >> 8);
    key[33] = (uint8_t)c->sport[r];
    key[34] = (uint8_t)(c->dport[r] >> 8);
    key[35] = (uint8_t)c->dport[r];
    key[36] = c->proto[r];
    key[37] = (uint8_t)v6;
    key[38] = key[39] = 0;
    uint64_t w[5], h = 0;
    memcpy(w, key, sizeof(w));
    for (int i = 0; i < 5; i++) h = (h ^ w[i]) * 0x9E3779B97F4A7C15ull; /* multiplicative mixing, word by word */
    nf_cid_slot *slot = &sc->cid[(h >> 32) & (NF_CID_SLOTS - 1)];
    if (!slot->used || memcmp(slot->key, key, sizeof(key)) != 0) {
        memcpy(slot->key, key, sizeof(key));
        nf_community_id(c->src_bin[r], c->dst_bin[r], v6, c->proto[r], c->sport[r], c->dport[r], slot->cid);
        slot->used = 1;
    }
    return slot->cid;
}

static inline char *put_id(char *o, const nf_pieces *pc, uint32_t g, int64_t index) {
    o = put(o, pc->prefix[g], pc->prefix_len[g]);
    *o++ = '-';
    return put_u64(o, (uint64_t)index);
}

/* An ECS source or destination from its address on: the port (-1: none, ICMP) and what that end sent
 * (sent[0] packets, sent[1] bytes; NULL: no counters). */
static inline char *put_ecs_endpoint(char *o, const char *ip, size_t n, int port, const int64_t *sent) {
    o = put(o, ip, n);
    o = PUTS(o, "\"");
    if (port >= 0) {
        o = PUTS(o, ",\"port\":");
        o = put_u64(o, (uint64_t)port);
    }
    if (sent != NULL) {
        o = PUTS(o, ",\"bytes\":");
        o = put_u64(o, (uint64_t)sent[1]);
        o = PUTS(o, ",\"packets\":");
        o = put_u64(o, (uint64_t)sent[0]);
    }
    return o;
}

static char *render_ecs(char *o, const nf_cols *c, size_t r, const nf_pieces *pc, nf_scratch *sc, uint32_t g,
                        const nf_str *gp, const nf_str *gvp) {
    const char *src = c->text + c->src_off[r], *dst = c->text + c->dst_off[r];
    size_t sn = c->src_len[r], dn = c->dst_len[r];
    unsigned flags = c->flags[r];
    int icmp = c->proto[r] == 1 || c->proto[r] == 58, counters = flags & NF_COUNTERS, inbound = flags & NF_INBOUND;
    const int64_t *k = c->counters[r]; /* packets s2d, bytes s2d, packets d2s, bytes d2s */
    char own[NF_CID_LEN];
    const char *cid = cid_of(c, r, sc, own);

    o = PUTS(o, "{\"@timestamp\":\"");
    o = put_iso(o, c->ts_ms[r], sc);
    o = PUTS(o, "\",\"event\":{");
    o = PUTP(o, gvp[(flags & NF_ALLOWED) ? 0 : 1]);
    o = put_id(o, pc, g, c->index[r]);
    o = PUTS(o, "\"},\"source\":{\"ip\":\"");
    o = put_ecs_endpoint(o, src, sn, icmp ? -1 : c->sport[r], counters ? k : NULL);
    o = PUTP(o, gp[inbound ? 0 : 2]);
    o = put_ecs_endpoint(o, dst, dn, icmp ? -1 : c->dport[r], counters ? k + 2 : NULL);
    o = PUTP(o, gp[inbound ? 1 : 3]);
    o = PUTP(o, pc->glob[((flags & NF_V6) ? 256 : 0) + c->proto[r]]);
    o = PUTS(o, ",\"community_id\":\"");
    o = put(o, cid, NF_CID_LEN);
    o = PUTS(o, "\"");
    if (counters) {
        o = PUTS(o, ",\"bytes\":");
        o = put_u64(o, (uint64_t)(k[1] + k[3]));
        o = PUTS(o, ",\"packets\":");
        o = put_u64(o, (uint64_t)(k[0] + k[2]));
    }
    o = PUTS(o, "},\"related\":{\"ip\":[\"");
    o = put(o, src, sn);
    o = PUTS(o, "\",\"");
    o = put(o, dst, dn);
    o = PUTS(o, "\"]}");
    o = PUTP(o, gp[4]);
    o = PUTP(o, gvp[2]);
    if (icmp) {
        o = PUTS(o, ",\"icmp_type\":");
        o = put_u64(o, c->sport[r]);
        o = PUTS(o, ",\"icmp_code\":");
        o = put_u64(o, c->dport[r]);
    }
    return PUTS(o, "}}}");
}

static char *render_cef(char *o, const nf_cols *c, size_t r, const nf_pieces *pc, nf_scratch *sc, uint32_t g,
                        const nf_str *gp, const nf_str *gvp) {
    unsigned flags = c->flags[r];
    const int64_t *k = c->counters[r];
    char own[NF_CID_LEN];
    const char *cid = cid_of(c, r, sc, own);
    o = PUTP(o, gp[(flags & NF_ALLOWED) ? 1 : 0]);
    o = put_u64(o, (uint64_t)c->ts_ms[r]);
    o = PUTS(o, " externalId=");
    o = put_id(o, pc, g, c->index[r]);
    o = (flags & NF_V6) ? PUTS(o, " c6a2=") : PUTS(o, " src=");
    o = put(o, c->text + c->src_off[r], c->src_len[r]);
    o = (flags & NF_V6) ? PUTS(o, " c6a2Label=Source IPv6 Address c6a3=") : PUTS(o, " dst=");
    o = put(o, c->text + c->dst_off[r], c->dst_len[r]);
    if (flags & NF_V6) o = PUTS(o, " c6a3Label=Destination IPv6 Address");
    o = PUTS(o, " spt=");
    o = put_u64(o, c->sport[r]);
    o = PUTS(o, " dpt=");
    o = put_u64(o, c->dport[r]);
    o = PUTS(o, " proto=");
    o = PUTP(o, pc->glob[c->proto[r]]);
    o = PUTS(o, " cs6=");
    o = put(o, cid, NF_CID_LEN - 1);
    o = PUTS(o, "\\= cs6Label=CommunityId"); /* the base64 pad, escaped as CEF wants '=' in a value */
    if (flags & NF_COUNTERS) {
        o = PUTS(o, " in=");
        o = put_u64(o, (uint64_t)k[1]);
        o = PUTS(o, " out=");
        o = put_u64(o, (uint64_t)k[3]);
        o = PUTS(o, " cn1=");
        o = put_u64(o, (uint64_t)k[0]);
        o = PUTS(o, " cn1Label=PacketsSourceToDestination cn2=");
        o = put_u64(o, (uint64_t)k[2]);
        o = PUTS(o, " cn2Label=PacketsDestinationToSource");
    }
    return PUTP(o, gvp[(flags & NF_INBOUND) ? 1 : 0]);
}

static char *render_ocsf(char *o, const nf_cols *c, size_t r, const nf_pieces *pc, nf_scratch *sc, uint32_t g,
                         const nf_str *gp, const nf_str *gvp) {
    unsigned flags = c->flags[r];
    int inbound = flags & NF_INBOUND;
    const int64_t *k = c->counters[r];
    char own[NF_CID_LEN];
    const char *cid = cid_of(c, r, sc, own);
    o = PUTP(o, gvp[(flags & NF_ALLOWED) ? 2 : 1]);
    o = put_u64(o, (uint64_t)c->ts_ms[r]);
    o = PUTS(o, ",\"metadata\":{\"uid\":\"");
    o = put_id(o, pc, g, c->index[r]);
    o = PUTP(o, gp[inbound ? 1 : 0]);
    o = PUTP(o, pc->glob[((flags & NF_V6) ? 256 : 0) + c->proto[r]]);
    o = PUTS(o, "\"community_uid\":\"");
    o = put(o, cid, NF_CID_LEN);
    o = PUTS(o, "\"},\"src_endpoint\":{\"ip\":\"");
    o = put(o, c->text + c->src_off[r], c->src_len[r]);
    o = PUTS(o, "\",\"port\":");
    o = put_u64(o, c->sport[r]);
    if (!inbound) o = PUTP(o, gp[2]);
    o = PUTS(o, "},\"dst_endpoint\":{\"ip\":\"");
    o = put(o, c->text + c->dst_off[r], c->dst_len[r]);
    o = PUTS(o, "\",\"port\":");
    o = put_u64(o, c->dport[r]);
    if (inbound) o = PUTP(o, gp[2]);
    o = PUTS(o, "}");
    if (flags & NF_COUNTERS) {
        o = PUTS(o, ",\"traffic\":{\"bytes_out\":");
        o = put_u64(o, (uint64_t)k[1]);
        o = PUTS(o, ",\"packets_out\":");
        o = put_u64(o, (uint64_t)k[0]);
        o = PUTS(o, ",\"bytes_in\":");
        o = put_u64(o, (uint64_t)k[3]);
        o = PUTS(o, ",\"packets_in\":");
        o = put_u64(o, (uint64_t)k[2]);
        o = PUTS(o, ",\"bytes\":");
        o = put_u64(o, (uint64_t)(k[1] + k[3]));
        o = PUTS(o, ",\"packets\":");
        o = put_u64(o, (uint64_t)(k[0] + k[2]));
        o = PUTS(o, "}");
    }
    return PUTP(o, gvp[0]);
}

/* An ASimNetworkSessionLogs row. The parser leaves ICMP types and codes above 255 to the reference, so the
 * type indexes its table; counters come all four or none (one direction only is a python row). */
static char *render_asim(char *o, const nf_cols *c, size_t r, const nf_pieces *pc, nf_scratch *sc, uint32_t g,
                         const nf_str *gp, const nf_str *gvp) {
    unsigned flags = c->flags[r], proto = c->proto[r];
    const int64_t *k = c->counters[r];
    const nf_str *network = &pc->glob[((flags & NF_V6) ? 256 : 0) + proto];
    char own[NF_CID_LEN];
    const char *cid = cid_of(c, r, sc, own);

    o = PUTS(o, "{\"TimeGenerated\":\"");
    char *ts = o; /* one time, written three times (a tuple has no duration) */
    o = put_iso(o, c->ts_ms[r], sc);
    size_t ts_len = (size_t)(o - ts);
    o = PUTS(o, "\",\"EventStartTime\":\"");
    o = put(o, ts, ts_len);
    o = PUTS(o, "\",\"EventEndTime\":\"");
    o = put(o, ts, ts_len);
    o = PUTS(o, "\",\"EventCount\":1,\"EventType\":\"NetworkSession\"");
    o = PUTP(o, gvp[(flags & NF_ALLOWED) ? 1 : 0]);
    o = PUTP(o, gp[0]);
    o = put_id(o, pc, g, c->index[r]);
    o = PUTS(o, "\",\"SrcIpAddr\":\"");
    o = put(o, c->text + c->src_off[r], c->src_len[r]);
    if (proto == 1 || proto == 58) {
        o = PUTS(o, "\",\"DstIpAddr\":\"");
        o = put(o, c->text + c->dst_off[r], c->dst_len[r]);
        o = PUTS(o, "\"");
        o = PUTP(o, *network);
        o = PUTP(o, pc->glob[(proto == 58 ? 768 : 512) + (c->sport[r] & 255)]);
        o = put_u64(o, c->dport[r]);
    } else {
        o = PUTS(o, "\",\"SrcPortNumber\":");
        o = put_u64(o, c->sport[r]);
        o = PUTS(o, ",\"DstIpAddr\":\"");
        o = put(o, c->text + c->dst_off[r], c->dst_len[r]);
        o = PUTS(o, "\",\"DstPortNumber\":");
        o = put_u64(o, c->dport[r]);
        o = PUTP(o, *network);
    }
    o = PUTP(o, gp[(flags & NF_INBOUND) ? 2 : 1]);
    if (flags & NF_COUNTERS) {
        o = PUTS(o, ",\"SrcBytes\":");
        o = put_u64(o, (uint64_t)k[1]);
        o = PUTS(o, ",\"SrcPackets\":");
        o = put_u64(o, (uint64_t)k[0]);
        o = PUTS(o, ",\"DstBytes\":");
        o = put_u64(o, (uint64_t)k[3]);
        o = PUTS(o, ",\"DstPackets\":");
        o = put_u64(o, (uint64_t)k[2]);
        o = PUTS(o, ",\"NetworkBytes\":");
        o = put_u64(o, (uint64_t)(k[1] + k[3]));
        o = PUTS(o, ",\"NetworkPackets\":");
        o = put_u64(o, (uint64_t)(k[0] + k[2]));
    }
    o = PUTP(o, gp[3]);
    o = PUTP(o, pc->glob[1024 + proto]);
    o = PUTS(o, ",\"CommunityId\":\"");
    o = put(o, cid, NF_CID_LEN);
    o = PUTS(o, "\"");
    return PUTP(o, gvp[2]);
}

int nf_render_row(int fmt, const nf_cols *c, size_t r, const nf_pieces *pc, nf_scratch *sc, nf_buf *out) {
    /* NF_ROW_VALUES: the per-tuple values of one row (addresses twice, numbers, ids) and a newline. */
    if (nf_buf_reserve(out, pc->max_piece + NF_ROW_VALUES)) return -1;
    uint32_t g = c->group[r] - pc->group0;
    const nf_str *gp = pc->g + (size_t)g * pc->g_stride;
    const nf_str *gvp = pc->gv + ((size_t)g * pc->nvariants + c->variant[r]) * pc->gv_stride;
    char *o = out->p + out->n, *end;
    switch (fmt) {
    case NF_ECS: end = render_ecs(o, c, r, pc, sc, g, gp, gvp); break;
    case NF_CEF: end = render_cef(o, c, r, pc, sc, g, gp, gvp); break;
    case NF_OCSF: end = render_ocsf(o, c, r, pc, sc, g, gp, gvp); break;
    default: end = render_asim(o, c, r, pc, sc, g, gp, gvp); break;
    }
    out->n += (size_t)(end - o);
    return 0;
}
