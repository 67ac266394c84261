"""One registry type behind datasets, architectures, mitigation methods and explainers."""

from __future__ import annotations

import pytest

from fairaudit.data.registry import DATASETS, get_spec, register_dataset
from fairaudit.errors import DatasetError, FairauditError, ModelLoadError
from fairaudit.explain.attribution import EXPLAINERS, ExplainerEntry, make_explainer
from fairaudit.mitigation.base import METHODS, MitigationMethod, get_method, register_method
from fairaudit.models.registry import MODEL_BUILDERS, build_model, register_model
from fairaudit.registry import Registry


def test_a_registry_refuses_a_second_object_under_a_taken_name_and_accepts_the_same_one_again():
    things = Registry("thing")
    first = things.register("a", ExplainerEntry("A", print))
    assert things.register("a", first) is first
    with pytest.raises(FairauditError, match="two things are named 'a'"):
        things.register("a", ExplainerEntry("another A", print))
    assert list(things) == ["a"] and things["a"] is first


def test_an_unknown_name_suggests_the_closest_one_and_lists_the_rest():
    things = Registry("thing")
    for name in ("reweight", "resample", "threshold"):
        things.register(name, name)
    with pytest.raises(FairauditError, match=r"unknown thing 'reweigth' \(did you mean 'reweight'\?\); available: "
                                             r"resample, reweight, threshold\."):
        things["reweigth"]
    with pytest.raises(FairauditError, match=r"unknown thing 'zzz'; available:"):
        things["zzz"]
    assert things.get("zzz") is None and "zzz" not in things


@pytest.mark.parametrize("registry, error, builtin", [(DATASETS, DatasetError, "adult"),
                                                      (MODEL_BUILDERS, ModelLoadError, "small_cnn"),
                                                      (METHODS, FairauditError, "faap"),
                                                      (EXPLAINERS, FairauditError, "gradcam")])
def test_every_registry_of_the_product_is_one_registry(registry, error, builtin):
    assert isinstance(registry, Registry) and registry.error is error and builtin in registry
    with pytest.raises(error, match=f"did you mean '{builtin}'"):
        registry[builtin[:-1] + "x"]


def test_the_four_registries_refuse_duplicates_through_their_register_functions():
    class Impostor(MitigationMethod):
        name = "faap"

    with pytest.raises(FairauditError, match="two mitigation methods are named 'faap'"):
        register_method(Impostor)
    assert get_method("faap").__name__ == "FAAP"
    with pytest.raises(ModelLoadError, match="two architectures are named 'small_cnn'"):
        register_model("small_cnn")(lambda n, shape: None)
    with pytest.raises(DatasetError, match="two datasets are named 'adult'"):
        register_dataset(type(get_spec("adult"))(**{**vars(get_spec("adult")), "default_target": "age"}))
    with pytest.raises(FairauditError, match="two attribution methods are named 'ig'"):
        EXPLAINERS.register("ig", ExplainerEntry("IG", print))
    with pytest.raises(ModelLoadError, match="did you mean 'small_cnn'"):
        build_model("small_cnm", 2, (3, 32, 32))
    with pytest.raises(FairauditError, match="unknown attribution method 'lime'"):
        make_explainer(build_model("small_cnn", 2, (3, 32, 32)), "lime")
