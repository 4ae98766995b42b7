"""Alerts (RFC 8446 §6): wire constants and one exception class per description.

``LocalProtocolError`` is re-exported here from ``errors`` for the core's modules.

Inside the core, a protocol error is raised as the matching ``Alert`` subclass; the
connection turns it into the outgoing fatal alert and a terminal event in one place.
"""

from __future__ import annotations

import enum

from .errors import LocalProtocolError as LocalProtocolError


class AlertLevel(enum.IntEnum):
    WARNING = 1
    FATAL = 2


class AlertDescription(enum.IntEnum):
    close_notify = 0
    unexpected_message = 10
    bad_record_mac = 20
    record_overflow = 22
    handshake_failure = 40
    bad_certificate = 42
    unsupported_certificate = 43
    certificate_revoked = 44
    certificate_expired = 45
    certificate_unknown = 46
    illegal_parameter = 47
    unknown_ca = 48
    access_denied = 49
    decode_error = 50
    decrypt_error = 51
    too_many_cids_requested = 52  # RFC 9147 §9
    protocol_version = 70
    insufficient_security = 71
    internal_error = 80
    inappropriate_fallback = 86
    user_canceled = 90
    missing_extension = 109
    unsupported_extension = 110
    unrecognized_name = 112
    bad_certificate_status_response = 113
    unknown_psk_identity = 115
    certificate_required = 116
    no_application_protocol = 120
    ech_required = 121  # RFC 9849 §11.2


class Alert(Exception):
    """A protocol error that ends the connection with this alert."""

    description: AlertDescription = AlertDescription.internal_error
    # Set when the alert is our verdict on the peer's certificate chain: the verifier's
    # own words, reported to the user (``CertificateVerificationFailed``).
    certificate_error: str | None = None

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason or self.description.name)
        self.reason = reason or self.description.name


class UnexpectedMessage(Alert):
    description = AlertDescription.unexpected_message


class BadRecordMac(Alert):
    description = AlertDescription.bad_record_mac


class RecordOverflow(Alert):
    description = AlertDescription.record_overflow


class HandshakeFailure(Alert):
    description = AlertDescription.handshake_failure


class BadCertificate(Alert):
    description = AlertDescription.bad_certificate


class UnsupportedCertificate(Alert):
    description = AlertDescription.unsupported_certificate


class CertificateRevoked(Alert):
    description = AlertDescription.certificate_revoked


class CertificateExpired(Alert):
    description = AlertDescription.certificate_expired


class CertificateUnknown(Alert):
    description = AlertDescription.certificate_unknown


class IllegalParameter(Alert):
    description = AlertDescription.illegal_parameter


class UnknownCa(Alert):
    description = AlertDescription.unknown_ca


class AccessDenied(Alert):
    description = AlertDescription.access_denied


class DecodeErrorAlert(Alert):
    description = AlertDescription.decode_error


class DecryptError(Alert):
    description = AlertDescription.decrypt_error


class TooManyCidsRequested(Alert):
    description = AlertDescription.too_many_cids_requested


class ProtocolVersion(Alert):
    description = AlertDescription.protocol_version


class InsufficientSecurity(Alert):
    description = AlertDescription.insufficient_security


class InternalError(Alert):
    description = AlertDescription.internal_error


class UserCanceled(Alert):
    description = AlertDescription.user_canceled


class MissingExtension(Alert):
    description = AlertDescription.missing_extension


class UnsupportedExtension(Alert):
    description = AlertDescription.unsupported_extension


class UnrecognizedName(Alert):
    description = AlertDescription.unrecognized_name


class BadCertificateStatusResponse(Alert):
    description = AlertDescription.bad_certificate_status_response


class UnknownPskIdentity(Alert):
    description = AlertDescription.unknown_psk_identity


class CertificateRequired(Alert):
    description = AlertDescription.certificate_required


class NoApplicationProtocol(Alert):
    description = AlertDescription.no_application_protocol


class EchRequired(Alert):
    """A client ends a handshake whose Encrypted Client Hello the server rejected (RFC 9849
    §6.1.6); `retry_configs` is the ECHConfigList the server sent to retry with."""

    description = AlertDescription.ech_required

    def __init__(self, reason: str = "", retry_configs: bytes | None = None) -> None:
        super().__init__(reason)
        self.retry_configs = retry_configs


ALERT_CLASSES: dict[AlertDescription, type[Alert]] = {
    cls.description: cls
    for cls in (
        UnexpectedMessage,
        BadRecordMac,
        RecordOverflow,
        HandshakeFailure,
        BadCertificate,
        UnsupportedCertificate,
        CertificateRevoked,
        CertificateExpired,
        CertificateUnknown,
        IllegalParameter,
        UnknownCa,
        AccessDenied,
        DecodeErrorAlert,
        DecryptError,
        TooManyCidsRequested,
        ProtocolVersion,
        InsufficientSecurity,
        InternalError,
        UserCanceled,
        MissingExtension,
        UnsupportedExtension,
        UnrecognizedName,
        BadCertificateStatusResponse,
        UnknownPskIdentity,
        CertificateRequired,
        NoApplicationProtocol,
        EchRequired,
    )
}


def alert_for(description: AlertDescription, reason: str = "") -> Alert:
    """The exception for an alert description (received or to send)."""
    cls = ALERT_CLASSES.get(description)
    if cls is None:
        alert = Alert(reason or description.name)
        alert.description = description
        return alert
    return cls(reason)
