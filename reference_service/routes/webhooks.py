from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request

from racebench.reference_service.routes.deps import ServiceDep
from racebench.reference_service.schemas import WebhookAck
from racebench.reference_service.webhooks import receive_webhook

router = APIRouter()


@router.post("/webhooks/razorpay")
async def razorpay_webhook(
    request: Request,
    service: ServiceDep,
    x_razorpay_signature: Annotated[str | None, Header()] = None,
    x_razorpay_event_id: Annotated[str | None, Header()] = None,
) -> WebhookAck:
    outcome = await receive_webhook(
        service.db,
        service.strategy,
        service.verifier,
        await request.body(),
        x_razorpay_signature,
        x_razorpay_event_id,
    )
    return WebhookAck(status=outcome)  # type: ignore[arg-type]  # never REJECTED: that raises
