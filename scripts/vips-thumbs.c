/* libvips used as a library, the way imgproxy uses it, for scripts/bench-inprocess.
 *
 * For each file: the file is read into memory once, then each run makes the largest height
 * with vips_thumbnail_buffer (shrink-on-load), renders it to memory, encodes it, and makes
 * every smaller height from that in-memory image (vips_thumbnail_image), as the product makes
 * 200 px from 400 px. JPEG out at Q=85, PNG at compression=1 (vips' fastest), metadata
 * stripped. With `--formats all`, each height is also saved as WebP (webpsave) and AVIF
 * (heifsave, AV1) from the same pixels, the set `render` makes (see docs/BENCHMARKS.md, "Modern
 * formats", for the settings of equal SSIM: --webp-q, --avif-q, --avif-effort).
 * One warm-up run, then RUNS timed runs; prints "file<TAB>ms" per timed run.
 * vips' operation cache is off, so no run reuses another's work.
 *
 *   vips-thumbs --threads N --runs R [--out DIR] [--formats all] [--webp-q Q] [--avif-q Q]
 *               [--avif-effort E] --height 400 --height 200 FILE...
 *
 * Build: cc -O2 -o vips-thumbs scripts/vips-thumbs.c $(pkg-config --cflags --libs vips)
 * (Debian: apt-get install libvips-dev). scripts/bench-inprocess builds it under target/.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <vips/vips.h>

#define MAX_HEIGHTS 8

static int all_formats = 0, webp_q = 80, avif_q = 60, avif_effort = 2;

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

static int is_png(const char *path) {
    const char *dot = strrchr(path, '.');
    return dot && (strcmp(dot, ".png") == 0 || strcmp(dot, ".PNG") == 0);
}

static int write_out(const void *buf, size_t len, const char *out, const char *file, int height, const char *ext) {
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    char stem[512];
    snprintf(stem, sizeof stem, "%s", base);
    char *dot = strrchr(stem, '.');
    if (dot)
        *dot = 0;
    char path[1024];
    snprintf(path, sizeof path, "%s/%s-%d.%s", out, stem, height, ext);
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    int failed = fwrite(buf, 1, len, f) != len;
    fclose(f);
    return failed ? -1 : 0;
}

/* 0 source (JPEG or PNG), 1 WebP, 2 AVIF. */
static int save_one(VipsImage *image, int png, int kind, const char *out, const char *file, int height) {
    void *buf = NULL;
    size_t len = 0;
    int failed;
    const char *ext;
    if (kind == 1) {
        failed = vips_webpsave_buffer(image, &buf, &len, "Q", webp_q, "strip", TRUE, NULL);
        ext = "webp";
    } else if (kind == 2) {
        failed = vips_heifsave_buffer(image, &buf, &len, "Q", avif_q, "compression", VIPS_FOREIGN_HEIF_COMPRESSION_AV1,
                                      "effort", avif_effort, "subsample_mode", VIPS_FOREIGN_SUBSAMPLE_OFF, "strip",
                                      TRUE, NULL);
        ext = "avif";
    } else if (png) {
        failed = vips_pngsave_buffer(image, &buf, &len, "compression", 1, "strip", TRUE, NULL);
        ext = "png";
    } else {
        failed = vips_jpegsave_buffer(image, &buf, &len, "Q", 85, "strip", TRUE, NULL);
        ext = "jpg";
    }
    if (failed)
        return -1;
    if (out)
        failed = write_out(buf, len, out, file, height, ext);
    g_free(buf);
    return failed;
}

static int save(VipsImage *image, int png, const char *out, const char *file, int height) {
    int failed = save_one(image, png, 0, out, file, height);
    for (int kind = 1; all_formats && kind <= 2 && !failed; kind++)
        failed = save_one(image, png, kind, out, file, height);
    return failed;
}

/* Makes every height (largest first) from one load; writes them to `out` when given. */
static int thumbnails(const void *data, size_t len, int png, const int *heights, int count, const char *out,
                      const char *file) {
    VipsImage *largest = NULL;
    if (vips_thumbnail_buffer((void *)data, len, &largest, VIPS_MAX_COORD, "height", heights[0], "size",
                              VIPS_SIZE_DOWN, NULL))
        return -1;
    /* Render once: the smaller heights are made from these pixels, not from the file again. */
    VipsImage *memory = vips_image_copy_memory(largest);
    g_object_unref(largest);
    if (!memory)
        return -1;
    int failed = save(memory, png, out, file, heights[0]);
    for (int i = 1; i < count && !failed; i++) {
        VipsImage *smaller = NULL;
        failed = vips_thumbnail_image(memory, &smaller, VIPS_MAX_COORD, "height", heights[i], "size",
                                      VIPS_SIZE_DOWN, NULL);
        if (!failed) {
            failed = save(smaller, png, out, file, heights[i]);
            g_object_unref(smaller);
        }
    }
    g_object_unref(memory);
    return failed;
}

static int descending(const void *a, const void *b) { return *(const int *)b - *(const int *)a; }

int main(int argc, char **argv) {
    if (VIPS_INIT(argv[0]))
        vips_error_exit(NULL);
    int threads = 1, runs = 3, heights[MAX_HEIGHTS], count = 0;
    const char *out = NULL;
    int first_file = argc;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (strcmp(argv[i], "--formats") == 0 && i + 1 < argc)
            all_formats = strcmp(argv[++i], "all") == 0;
        else if (strcmp(argv[i], "--webp-q") == 0 && i + 1 < argc)
            webp_q = atoi(argv[++i]);
        else if (strcmp(argv[i], "--avif-q") == 0 && i + 1 < argc)
            avif_q = atoi(argv[++i]);
        else if (strcmp(argv[i], "--avif-effort") == 0 && i + 1 < argc)
            avif_effort = atoi(argv[++i]);
        else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc)
            out = argv[++i];
        else if (strcmp(argv[i], "--height") == 0 && i + 1 < argc && count < MAX_HEIGHTS)
            heights[count++] = atoi(argv[++i]);
        else {
            first_file = i;
            break;
        }
    }
    if (count == 0 || first_file >= argc) {
        fprintf(stderr, "usage: %s --threads N --runs R [--out DIR] --height H... FILE...\n", argv[0]);
        return 2;
    }
    qsort(heights, count, sizeof heights[0], descending);
    vips_concurrency_set(threads);
    vips_cache_set_max(0);
    for (int f = first_file; f < argc; f++) {
        gchar *data = NULL;
        gsize len = 0;
        if (!g_file_get_contents(argv[f], &data, &len, NULL)) {
            fprintf(stderr, "cannot read %s\n", argv[f]);
            return 1;
        }
        int png = is_png(argv[f]);
        for (int run = 0; run <= runs; run++) {
            double started = now_ms();
            /* The warm-up run (0) writes the thumbnails, if asked; timed runs write nothing. */
            if (thumbnails(data, len, png, heights, count, run == 0 ? out : NULL, argv[f])) {
                fprintf(stderr, "%s: %s\n", argv[f], vips_error_buffer());
                return 1;
            }
            double elapsed = now_ms() - started;
            if (run > 0)
                printf("%s\t%.3f\n", argv[f], elapsed);
        }
        fflush(stdout);
        g_free(data);
    }
    vips_shutdown();
    return 0;
}
