"""`racebench serve` answers /healthz, and a payment created and verified over HTTP is captured."""

from __future__ import annotations

import httpx

from racebench.harness.gateway import Gateway
from racebench.harness.service_process import running_service


def test_serve_for_update_captures_over_real_http(database_url: str, gateway: Gateway) -> None:
    with running_service(strategy="for_update", database_url=database_url, workers=2) as service:
        with httpx.Client(base_url=service.base_url, timeout=10) as http:
            health = http.get("/healthz")
            assert health.json() == {"status": "ok", "strategy": "for_update", "database": "ok"}
            payment = http.post("/payments", json={"amount": 49_900}).json()
            checkout = gateway.checkout(payment["id"], payment["razorpay_order_id"])
            verified = http.post("/payments/verify", json=checkout.body())
            assert verified.status_code == 200
            assert verified.json()["status"] == "captured"
            assert http.get(f"/payments/{payment['id']}").json()["status"] == "captured"
            assert http.get(f"/invoices/{payment['invoice_id']}").json()["status"] == "paid"
