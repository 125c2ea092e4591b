"""Notional, fees and mark-to-market for linear and inverse contracts.

Linear: notional = ``price * qty * contract_size`` in quote currency; pnl in quote.
Inverse: notional = ``qty * contract_size / price`` in base currency (qty in contracts); pnl in base.

Cash flow follows hftbacktest's convention: ``balance -= side * notional`` at each fill (side +1 buy, -1 sell);
fees accumulate separately (``fee = notional * rate``; a negative rate is a rebate and gives a negative fee).
"""

from __future__ import annotations

from numba import njit

from mmlab.types import ContractType

_INVERSE = int(ContractType.INVERSE)


@njit(cache=True, _nrt=False, error_model="numpy")
def notional_nb(contract_type, contract_size, price, qty):
    """Notional of ``qty`` at ``price``: quote currency (linear) or base currency (inverse)."""
    if contract_type == _INVERSE:
        return contract_size * qty / price
    return contract_size * price * qty


@njit(cache=True, _nrt=False, error_model="numpy")
def fee_nb(contract_type, contract_size, price, qty, maker, maker_fee, taker_fee):
    """Fee of one fill (negative = rebate), in the notional's currency."""
    amount = notional_nb(contract_type, contract_size, price, qty)
    if maker:
        return amount * maker_fee
    return amount * taker_fee


@njit(cache=True, _nrt=False, error_model="numpy")
def pnl_nb(contract_type, contract_size, balance, position, fees, mark_price):
    """Mark-to-market pnl net of fees: linear in quote, inverse in base."""
    if contract_type == _INVERSE:
        return -balance - contract_size * position / mark_price - fees
    return balance + contract_size * position * mark_price - fees
