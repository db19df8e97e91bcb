"""The maintainer's bench: measurements a student never needs (`python -m labkit bench ...`).

    speed       images per second of training and inference                 bench speed
    quality     train and score with a profile, over seeds                  bench quality
    gpu_check   the GPU path proven in minutes, stage by stage, to a plan   bench gpu-check
    rehearsal   what the full dataset will cost, on a set shaped like it    bench rehearsal
    like_full   that synthetic set shaped like Oxford-IIIT Pet              synthetic --like-full
    reports     where measurements are written, and on what they ran

The bench imports labkit's core; nothing in the core imports the bench. docs/benchmarks.md,
docs/gpu-check.md and docs/rehearsal.md describe what it measured.
"""
