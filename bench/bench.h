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
/* Best times of three computations over 9 rounds, the three taking turns
 * within each round (each at least budget/27 seconds), so that a slow
 * spell of the machine falls on all three alike: for ratios of small
 * operations, which drift by more than the differences they measure when
 * each is timed in a block of its own. */
#define TIME_BEST3(o1, o2, o3, budget, s1, s2, s3)                 \
    do {                                                       \
        double b_[3] = { 1e300, 1e300, 1e300 };                \
        for (int round_ = 0; round_ < 9; round_++)             \
            for (int w_ = 0; w_ < 3; w_++) {                   \
                int reps_ = 0;                                 \
                double t0_ = now(), t1_;                       \
                do {                                           \
                    if (w_ == 0) { s1; }                       \
                    else if (w_ == 1) { s2; }                  \
                    else { s3; }                               \
                    reps_++;                                   \
                    t1_ = now();                               \
                } while (t1_ - t0_ < (budget) / 27);           \
                double per_ = (t1_ - t0_) / reps_;             \
                if (per_ < b_[w_]) b_[w_] = per_;              \
            }                                                  \
        (o1) = b_[0], (o2) = b_[1], (o3) = b_[2];              \
    } while (0)

#endif
