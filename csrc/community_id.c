/* Community ID v1 (https://github.com/corelight/community-id-spec), seed 0, as community_id.py computes it.
 * SHA-1 written out here (FIPS 180-4): the hashed flow is at most 40 bytes, so it is one block. */
#include <string.h>

#include "flow.h"

#define ROL(x, n) (((x) << (n)) | ((x) >> (32 - (n))))

/* The 80 rounds unrolled, the message schedule kept in a ring of 16 words. */
#define W(i) (w[(i) & 15] = ROL(w[((i) + 13) & 15] ^ w[((i) + 8) & 15] ^ w[((i) + 2) & 15] ^ w[(i) & 15], 1))
#define R(a, b, c, d, e, f, k, x)                \
    do {                                         \
        e += ROL(a, 5) + (f) + (k) + (x);        \
        b = ROL(b, 30);                          \
    } while (0)
#define F1(b, c, d) (((c) ^ (d)) & (b)) ^ (d)
#define F2(b, c, d) ((b) ^ (c) ^ (d))
#define F3(b, c, d) ((((b) | (c)) & (d)) | ((b) & (c)))
#define R1(a, b, c, d, e, i) R(a, b, c, d, e, F1(b, c, d), 0x5A827999u, (i) < 16 ? w[i] : W(i))
#define R2(a, b, c, d, e, i) R(a, b, c, d, e, F2(b, c, d), 0x6ED9EBA1u, W(i))
#define R3(a, b, c, d, e, i) R(a, b, c, d, e, F3(b, c, d), 0x8F1BBCDCu, W(i))
#define R4(a, b, c, d, e, i) R(a, b, c, d, e, F2(b, c, d), 0xCA62C1D6u, W(i))
#define FIVE(RX, i)               \
    RX(a, b, c, d, e, (i));       \
    RX(e, a, b, c, d, (i) + 1);   \
    RX(d, e, a, b, c, (i) + 2);   \
    RX(c, d, e, a, b, (i) + 3);   \
    RX(b, c, d, e, a, (i) + 4)
#define TWENTY(RX, i) \
    FIVE(RX, i);      \
    FIVE(RX, (i) + 5); \
    FIVE(RX, (i) + 10); \
    FIVE(RX, (i) + 15)

static void sha1_block(const uint8_t block[64], uint32_t h[5]) {
    uint32_t w[16];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)block[4 * i] << 24 | (uint32_t)block[4 * i + 1] << 16 | (uint32_t)block[4 * i + 2] << 8 |
               (uint32_t)block[4 * i + 3];
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    TWENTY(R1, 0);
    TWENTY(R2, 20);
    TWENTY(R3, 40);
    TWENTY(R4, 60);
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>
#define NF_HAVE_SHA_NI 1

/* The same block function on the SHA extensions of x86 CPUs (Intel since 2016, AMD since Zen): a few
 * times faster, and about every other flow tuple is a flow not seen before. Message words of group i
 * (rounds 4i..4i+3) are M[i]; for i >= 4, M[i] = sha1msg2(sha1msg1(M[i-4], M[i-3]) ^ M[i-2], M[i-1]),
 * computed a step at a time in the groups before it. */
/* One group of four rounds, i = 1..19 (f = i / 5), unrolled by the compiler: every index is a constant. */
#define GROUP(i, f)                                                                           \
    do {                                                                                      \
        __m128i cur = m[(i) % 4];                                                             \
        if ((i) & 1) {                                                                        \
            e1 = _mm_sha1nexte_epu32(e1, cur);                                                \
            e0 = abcd;                                                                        \
            if ((i) >= 3 && (i) <= 18) m[((i) + 1) % 4] = _mm_sha1msg2_epu32(m[((i) + 1) % 4], cur); \
            abcd = _mm_sha1rnds4_epu32(abcd, e1, f);                                          \
        } else {                                                                              \
            e0 = _mm_sha1nexte_epu32(e0, cur);                                                \
            e1 = abcd;                                                                        \
            if ((i) >= 3 && (i) <= 18) m[((i) + 1) % 4] = _mm_sha1msg2_epu32(m[((i) + 1) % 4], cur); \
            abcd = _mm_sha1rnds4_epu32(abcd, e0, f);                                          \
        }                                                                                     \
        if ((i) <= 16) m[((i) + 3) % 4] = _mm_sha1msg1_epu32(m[((i) + 3) % 4], cur);          \
        if ((i) >= 2 && (i) <= 17) m[((i) + 2) % 4] = _mm_xor_si128(m[((i) + 2) % 4], cur);   \
    } while (0)

__attribute__((target("sha,ssse3,sse4.1"))) static void sha1_block_ni(const uint8_t block[64], uint32_t h[5]) {
    const __m128i swap = _mm_set_epi64x(0x0001020304050607LL, 0x08090a0b0c0d0e0fLL);
    __m128i abcd = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)h), 0x1B);
    __m128i e0 = _mm_set_epi32((int)h[4], 0, 0, 0), e1;
    const __m128i abcd_save = abcd, e0_save = e0;
    __m128i m[4];
    for (int i = 0; i < 4; i++) m[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(block + 16 * i)), swap);
    e0 = _mm_add_epi32(e0, m[0]);
    e1 = abcd;
    abcd = _mm_sha1rnds4_epu32(abcd, e0, 0);
    GROUP(1, 0); GROUP(2, 0); GROUP(3, 0); GROUP(4, 0);
    GROUP(5, 1); GROUP(6, 1); GROUP(7, 1); GROUP(8, 1); GROUP(9, 1);
    GROUP(10, 2); GROUP(11, 2); GROUP(12, 2); GROUP(13, 2); GROUP(14, 2);
    GROUP(15, 3); GROUP(16, 3); GROUP(17, 3); GROUP(18, 3); GROUP(19, 3);
    e0 = _mm_sha1nexte_epu32(e0, e0_save);
    abcd = _mm_add_epi32(abcd, abcd_save);
    _mm_storeu_si128((__m128i *)h, _mm_shuffle_epi32(abcd, 0x1B));
    h[4] = (uint32_t)_mm_extract_epi32(e0, 3);
}

static int sha_ni;

int nf_sha1_is_fast(void) { return sha_ni; }

void nf_init(void) {
    unsigned a, b, c, d;
    int sse41 = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_SSE4_1) && (c & bit_SSSE3);
    sha_ni = sse41 && __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & (1u << 29));
}
#else
void nf_init(void) {}
int nf_sha1_is_fast(void) { return 0; }
#endif

/* SHA-1 of at most 55 bytes (one block). */
static void sha1_short(const uint8_t *data, size_t n, uint8_t digest[20], int portable) {
    uint8_t block[64] = {0};
    uint32_t h[5] = {0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u, 0xC3D2E1F0u};
    memcpy(block, data, n);
    block[n] = 0x80;
    uint64_t bits = (uint64_t)n * 8;
    for (int i = 0; i < 8; i++) block[63 - i] = (uint8_t)(bits >> (8 * i));
#ifdef NF_HAVE_SHA_NI
    if (sha_ni && !portable)
        sha1_block_ni(block, h);
    else
#endif
        sha1_block(block, h);
    for (int i = 0; i < 5; i++) {
        digest[4 * i] = (uint8_t)(h[i] >> 24);
        digest[4 * i + 1] = (uint8_t)(h[i] >> 16);
        digest[4 * i + 2] = (uint8_t)(h[i] >> 8);
        digest[4 * i + 3] = (uint8_t)h[i];
    }
}

/* ICMP type -> the type of its reply (community_id.py _ICMP4_PAIRS / _ICMP6_PAIRS); -1: none. */
static int icmp_reply(uint8_t proto, uint16_t type) {
    if (proto == 1) {
        switch (type) {
        case 8: return 0;
        case 0: return 8;
        case 13: return 14;
        case 14: return 13;
        case 15: return 16;
        case 16: return 15;
        case 17: return 18;
        case 18: return 17;
        case 10: return 9;
        case 9: return 10;
        default: return -1;
        }
    }
    switch (type) {
    case 128: return 129;
    case 129: return 128;
    case 133: return 134;
    case 134: return 133;
    case 135: return 136;
    case 136: return 135;
    case 130: return 131;
    case 131: return 130;
    case 139: return 140;
    case 140: return 139;
    default: return -1;
    }
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void nf_community_id(const uint8_t *a, const uint8_t *b, int v6, uint8_t proto, uint16_t sport, uint16_t dport,
                     char out[NF_CID_LEN]) {
    nf_community_id_with(a, b, v6, proto, sport, dport, out, 0);
}

void nf_community_id_with(const uint8_t *a, const uint8_t *b, int v6, uint8_t proto, uint16_t sport, uint16_t dport,
                          char out[NF_CID_LEN], int portable) {
    size_t alen = v6 ? 16 : 4;
    int one_way = 0;
    if (proto == 1 || proto == 58) {
        int reply = icmp_reply(proto, sport);
        if (reply < 0)
            one_way = 1; /* no reply type: hashed as seen (type, code), never reordered */
        else
            dport = (uint16_t)reply;
    }
    if (!one_way) {
        int cmp = memcmp(a, b, alen);
        if (cmp > 0 || (cmp == 0 && sport > dport)) {
            const uint8_t *t = a;
            a = b;
            b = t;
            uint16_t p = sport;
            sport = dport;
            dport = p;
        }
    }
    uint8_t data[40];
    size_t n = 0;
    data[n++] = 0;
    data[n++] = 0;
    memcpy(data + n, a, alen);
    n += alen;
    memcpy(data + n, b, alen);
    n += alen;
    data[n++] = proto;
    data[n++] = 0;
    if (proto == 6 || proto == 17 || proto == 132 || proto == 1 || proto == 58) {
        data[n++] = (uint8_t)(sport >> 8);
        data[n++] = (uint8_t)sport;
        data[n++] = (uint8_t)(dport >> 8);
        data[n++] = (uint8_t)dport;
    }
    uint8_t d[21];
    sha1_short(data, n, d, portable);
    d[20] = 0;
    out[0] = '1';
    out[1] = ':';
    char *o = out + 2;
    for (int i = 0; i < 21; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16 | (uint32_t)d[i + 1] << 8 | d[i + 2];
        *o++ = B64[v >> 18];
        *o++ = B64[(v >> 12) & 63];
        *o++ = B64[(v >> 6) & 63];
        *o++ = B64[v & 63];
    }
    out[NF_CID_LEN - 1] = '='; /* 20 bytes: 27 characters and one pad */
}
