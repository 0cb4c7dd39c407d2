"""Benchmarks of smoothcache, run from the repository root as modules.

    python -m bench.overhead   # measured against theoretical speed-up, DiT-S/2 size, the original's schedules
    python -m bench.compile    # torch.compile with and without the cache
    python -m bench.quality    # embedded digits DiT: speed-up against Digits-FID / PSNR / SSIM, every method
    python -m bench.peers      # executed compute of every peer operating point on the digits DiT

Modules: ``common`` (results folder, BENCHMARKS.md sections), ``models`` (the random-weight DiT-S/2 pipeline),
``restore`` (exact snapshot / restore of a pipeline that a peer hooked), ``peers`` (diffusers' caches made to
run on DiT), ``cachedit`` (cache-dit's DBCache on DiT), ``methods`` (every generation method of the quality
benchmark), ``quality`` (its driver), ``matching`` (matched speed-up comparisons), ``quality_report`` and
``pareto`` (its tables and plots).
"""
