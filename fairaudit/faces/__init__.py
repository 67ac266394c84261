"""Face-recognition audits: identification and verification per group, and how the gallery's make-up moves them.

:mod:`fairaudit.faces.engine` holds the measurements, :mod:`fairaudit.faces.model` the embedding networks
and their CosFace / ArcFace training, :mod:`fairaudit.faces.demo` the demo face-recognition model and
:func:`run_face_audit` the whole audit of a model on a split.
"""

from fairaudit.faces.engine import (Embeddings, Identification, Verification, embed_dataset, embeddings_from_arrays,
                                    gallery_sweep, identify, verify)

__all__ = ["Embeddings", "Identification", "Verification", "embed_dataset", "embeddings_from_arrays",
           "gallery_sweep", "identify", "verify"]
