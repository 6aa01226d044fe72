"""Webhook endpoints per project and the signed delivery of job events to them."""
