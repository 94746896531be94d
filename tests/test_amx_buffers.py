"""Where the CPU has AMX, llama.cpp loads Nightcap's models without its AMX weight buffers."""

from __future__ import annotations

import llama_cpp.llama_cpp as native
import pytest

from models import runtime


@pytest.mark.parametrize("amx", [True, False])
def test_extra_buffers_are_off_inside_only_where_the_cpu_has_amx(monkeypatch: pytest.MonkeyPatch, amx: bool) -> None:
    monkeypatch.setattr(runtime, "has_amx", lambda: amx)
    default = native.llama_model_default_params
    assert default().use_extra_bufts
    with runtime.plain_cpu_buffers():
        assert native.llama_model_default_params().use_extra_bufts is (not amx)
    assert native.llama_model_default_params is default


def test_the_default_parameters_come_back_when_the_load_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "has_amx", lambda: True)
    default = native.llama_model_default_params
    with pytest.raises(ValueError), runtime.plain_cpu_buffers():
        raise ValueError("no such model")
    assert native.llama_model_default_params is default


def test_the_system_info_is_read() -> None:
    assert isinstance(runtime.has_amx(), bool)
