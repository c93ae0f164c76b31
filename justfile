# A menu only: each recipe runs one `cargo xtask` task (xtask/src/main.rs) or the simulator.

# List the recipes.
default:
    @just --list

# Everything CI checks: fmt, clippy, tests, loom models, tidy.
ci:
    cargo xtask ci

# Loom models: `just loom`, `just loom mm-buddy`, `just loom mm-buddy -- NAME --exact`.
loom *args:
    cargo xtask loom {{args}}

# Criterion benchmarks: `just bench --quick --json bench.json`.
bench *args:
    cargo xtask bench {{args}}

# Repository rules: dependency DAG, crate headers, concurrency names, test attributes.
tidy:
    cargo xtask tidy

# Run a scenario (the built-in `default` when none is given).
run *args:
    cargo run --release --bin mmsim -- run {{args}}
