"""Injection and update math (FORMAT.md steps 2-3) and their checkpoint key names."""

from __future__ import annotations

import torch

from shadow_edge.layers import ShadowInjectionModel, ShadowUpdateModel, adapter_parameter_count

H, K, G, SLOTS = 8, 3, 5, 2


def test_injection_key_names_shapes_and_init():
    torch.manual_seed(0)
    injection = ShadowInjectionModel(num_slots=SLOTS, hidden_size=H, injection_hidden_size=K, alpha=0.1, dropout=0.0)
    shapes = {k: tuple(v.shape) for k, v in injection.state_dict().items()}
    assert shapes == {"injection_downs": (SLOTS, H, K), "injection_ups": (SLOTS, K, H)}
    assert torch.count_nonzero(injection.injection_ups) == 0
    big = ShadowInjectionModel(num_slots=4, hidden_size=64, injection_hidden_size=64, alpha=0.1, dropout=0.0)
    assert abs(big.injection_downs.std().item() - 0.02) < 0.002


def test_fresh_injection_is_identity():
    injection = ShadowInjectionModel(num_slots=SLOTS, hidden_size=H, injection_hidden_size=K, alpha=0.1, dropout=0.0)
    h, s = torch.randn(2, 3, H), torch.randn(2, 3, H)
    assert torch.equal(injection(h, s, 1), h)


def test_injection_formula():
    injection = ShadowInjectionModel(num_slots=SLOTS, hidden_size=H, injection_hidden_size=K, alpha=0.3, dropout=0.0)
    with torch.no_grad():
        injection.injection_ups.normal_()
    h, s = torch.randn(2, 3, H), torch.randn(2, 3, H)
    expected = h + 0.3 * ((h - s) @ injection.injection_downs[1]) @ injection.injection_ups[1]
    torch.testing.assert_close(injection(h, s, 1), expected)


def test_update_key_names_and_shapes():
    update = ShadowUpdateModel(num_slots=SLOTS, hidden_size=H, gate_hidden_size=G, dropout=0.0)
    shapes = {k: tuple(v.shape) for k, v in update.state_dict().items()}
    expected = {"hidden_norm.weight": (H,), "hidden_norm.bias": (H,)}
    for j in range(SLOTS):
        expected[f"update_gates.{j}.0.weight"] = (G, H)
        expected[f"update_gates.{j}.2.weight"] = (H, G)
        expected[f"update_transforms.{j}.0.weight"] = (G, H)
        expected[f"update_transforms.{j}.3.weight"] = (H, G)
    assert shapes == expected


def test_update_formula():
    torch.manual_seed(1)
    update = ShadowUpdateModel(num_slots=SLOTS, hidden_size=H, gate_hidden_size=G, dropout=0.0)
    h, s = torch.randn(2, 3, H), torch.randn(2, 3, H)
    x = torch.nn.functional.layer_norm(h, (H,), update.hidden_norm.weight, update.hidden_norm.bias)
    gates, transforms = update.update_gates[0], update.update_transforms[0]
    g = torch.sigmoid(torch.nn.functional.silu(x @ gates[0].weight.T) @ gates[2].weight.T)
    t = torch.nn.functional.silu(x @ transforms[0].weight.T) @ transforms[3].weight.T
    torch.testing.assert_close(update(h, s, 0), s + g * (t - s))


def test_parameter_count_formula_matches_modules():
    injection = ShadowInjectionModel(num_slots=3, hidden_size=H, injection_hidden_size=K, alpha=0.1, dropout=0.1)
    update = ShadowUpdateModel(num_slots=3, hidden_size=H, gate_hidden_size=G, dropout=0.1)
    total = sum(p.numel() for m in (injection, update) for p in m.parameters())
    assert total == adapter_parameter_count(4, H, K, G) == 3 * H * K * 2 + 3 * 4 * H * G + 2 * H
