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
/* Best times of two or three computations over 9 rounds, taking turns
 * within each round (each at least budget/(9·count) seconds), so that a
 * slow spell of the machine falls on all of them alike: for ratios of
 * small operations, which drift by more than the differences they measure
 * when each is timed in a block of its own. */
#define TIME_ALT_(nw, outs, budget, s1, s2, s3)                     \
    do {                                                        \
        for (int w_ = 0; w_ < (nw); w_++) (outs)[w_] = 1e300;   \
        for (int round_ = 0; round_ < 9; round_++)              \
            for (int w_ = 0; w_ < (nw); w_++) {                 \
                int reps_ = 0;                                  \
                double t0_ = now(), t1_;                        \
                do {                                            \
                    if (w_ == 0) { s1; }                        \
                    else if (w_ == 1) { s2; }                   \
                    else { s3; }                                \
                    reps_++;                                    \
                    t1_ = now();                                \
                } while (t1_ - t0_ < (budget) / (9.0 * (nw)));  \
                double per_ = (t1_ - t0_) / reps_;              \
                if (per_ < (outs)[w_]) (outs)[w_] = per_;       \
            }                                                   \
    } while (0)
#define TIME_BEST2(o1, o2, budget, s1, s2)                          \
    do {                                                        \
        double b_[2];                                           \
        TIME_ALT_(2, b_, budget, s1, s2, (void)0);              \
        (o1) = b_[0], (o2) = b_[1];                             \
    } while (0)
#define TIME_BEST3(o1, o2, o3, budget, s1, s2, s3)                  \
    do {                                                        \
        double b_[3];                                           \
        TIME_ALT_(3, b_, budget, s1, s2, s3);                   \
        (o1) = b_[0], (o2) = b_[1], (o3) = b_[2];               \
    } while (0)

#endif
