from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from racebench.reference_service import payments
from racebench.reference_service.routes.deps import JsonBodyRoute, ServiceDep
from racebench.reference_service.schemas import (
    MAX_ID,
    InvoicePublic,
    PaymentCreate,
    PaymentDetail,
    PaymentPublic,
    VerifyPublic,
    VerifyRequest,
)

router = APIRouter(route_class=JsonBodyRoute)
IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]


@router.post("/payments", status_code=201)
async def create_payment(body: PaymentCreate, service: ServiceDep) -> PaymentPublic:
    return await payments.create_payment(service.db, body)


@router.post("/payments/verify")
async def verify_payment(body: VerifyRequest, service: ServiceDep) -> VerifyPublic:
    return await payments.verify_checkout(service.db, service.strategy, service.verifier, body)


@router.get("/payments/{payment_id:id}")
async def get_payment(payment_id: IdPath, service: ServiceDep) -> PaymentDetail:
    return await payments.get_payment(service.db, payment_id)


@router.get("/invoices/{invoice_id:id}")
async def get_invoice(invoice_id: IdPath, service: ServiceDep) -> InvoicePublic:
    return await payments.get_invoice(service.db, invoice_id)
