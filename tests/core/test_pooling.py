"""Last-token pooling: right under left and right padding (shadow-peft 0.1.x is not)."""

from __future__ import annotations

import torch

from shadow_edge.pooling import last_token_index, pool_last_token


def test_issue_example_left_padding_pools_position_3():
    hidden = torch.tensor([10.0, 20.0, 30.0, 40.0]).view(1, 4, 1).expand(2, 4, 1)
    mask = torch.tensor([[0, 0, 1, 1], [0, 1, 1, 1]])
    assert last_token_index(mask).tolist() == [3, 3]
    assert pool_last_token(hidden, mask).flatten().tolist() == [40.0, 40.0]


def test_right_padding_pools_the_last_real_token():
    hidden = torch.arange(8, dtype=torch.float32).view(2, 4, 1)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0]])
    assert last_token_index(mask).tolist() == [1, 2]
    assert pool_last_token(hidden, mask).flatten().tolist() == [1.0, 6.0]


def test_boolean_mask_and_empty_row():
    mask = torch.tensor([[True, False, False], [False, False, False]])
    assert last_token_index(mask).tolist() == [0, 0]


# Edge rows, one definition: all padding, one token (first or last position), no padding.
EDGE_MASK = [[0, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1], [1, 1, 1, 1], [0, 1, 1, 0]]
EDGE_LAST = [0, 0, 3, 3, 2]
EDGE_POSITIONS = [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 1, 2, 3], [0, 0, 1, 1]]


def test_edge_rows_have_one_definition_in_core_exporter_and_runtime():
    import numpy as np

    from exporters import shadow_module
    from runtime.generation import positions_from_mask as runtime_positions
    from shadow_edge import generation
    from shadow_edge.pooling import positions_from_mask

    mask = torch.tensor(EDGE_MASK)
    assert last_token_index(mask).tolist() == EDGE_LAST
    assert positions_from_mask(mask).tolist() == EDGE_POSITIONS
    assert runtime_positions(np.array(EDGE_MASK)).tolist() == EDGE_POSITIONS
    # the exporter and the core's generate use these very functions (no copies)
    assert shadow_module.pool_last_token is pool_last_token
    assert shadow_module.positions_from_mask is positions_from_mask
    assert generation.positions_from_mask is positions_from_mask
    hidden = torch.arange(5 * 4, dtype=torch.float32).view(5, 4, 1)
    assert pool_last_token(hidden, mask).flatten().tolist() == [
        float(4 * row + i) for row, i in enumerate(EDGE_LAST)]


def test_no_mask_pools_last_position():
    hidden = torch.randn(3, 5, 4)
    assert torch.equal(pool_last_token(hidden, None), hidden[:, -1])


def test_mask_longer_than_hidden_uses_its_last_columns():
    # With a KV cache the mask covers past + new positions; pooling uses the new ones.
    hidden = torch.arange(3, dtype=torch.float32).view(1, 3, 1)
    mask = torch.tensor([[1, 1, 1, 1, 0]])
    assert pool_last_token(hidden, mask).item() == 1.0
