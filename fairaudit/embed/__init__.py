"""Latent-space analyses: before/after t-SNE/UMAP maps of ``g(x)`` and the sensitive-attribute leakage probe.

* :func:`embed_run` – before/after projections of a finished run (a :class:`RunEmbedding`);
* :func:`run_leakage` / :func:`cached_leakage` – the leakage probe of a run, cached as ``leakage.json``;
* :class:`LeakageProbe`, :func:`project`, :func:`project_pair`, :func:`latents_of` – the building blocks.
"""

from fairaudit.embed.latents import DEFAULT_SAMPLE, MAX_SAMPLE, latents_of, sample_indices, stratified_sample
from fairaudit.embed.leakage import LeakageProbe, probe_leakage, wilson_interval
from fairaudit.embed.projection import align, project, project_pair
from fairaudit.embed.runs import (COLORS, RunEmbedding, behaviour_table, cached_leakage, embed_run,
                                  embedding_cached, leakage_table, run_leakage, sample_latents)

__all__ = ["embed_run", "embedding_cached", "RunEmbedding", "run_leakage", "cached_leakage", "leakage_table",
           "behaviour_table", "sample_latents", "LeakageProbe", "probe_leakage", "wilson_interval", "project",
           "project_pair", "align", "latents_of", "sample_indices", "stratified_sample",
           "DEFAULT_SAMPLE", "MAX_SAMPLE", "COLORS"]
