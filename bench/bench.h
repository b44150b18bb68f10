/* Timing shared by the benchmarks. */
#ifndef LJ_BENCH_H
#define LJ_BENCH_H
#include <time.h>

static inline double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Best time of one call over 5 rounds of at least budget/5 seconds each. */
#define TIME_BEST(out, budget, stmt)                         \
    do {                                                     \
        double best_ = 1e300;                                \
        for (int round_ = 0; round_ < 5; round_++) {         \
            int reps_ = 0;                                   \
            double t0_ = now(), t1_;                         \
            do {                                             \
                stmt;                                        \
                reps_++;                                     \
                t1_ = now();                                 \
            } while (t1_ - t0_ < (budget) / 5);              \
            double per_ = (t1_ - t0_) / reps_;               \
            if (per_ < best_) best_ = per_;                  \
        }                                                    \
        (out) = best_;                                       \
    } while (0)
#endif
