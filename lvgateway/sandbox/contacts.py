"""The simulator's Contact Manager: create, partial update and read of LiveVox contacts.

Contacts are kept in LiveVox's JSON shape (docs/livevox-api.md section 4.1).

- Create answers the new contact's id, or raises the exact duplicate answer
  ``{"code":202,"message":"Contact already exists!"}`` [C:EOSPY].
- Update changes only the fields sent: ``person`` and ``guarantor`` are merged
  deeply, ``customFields`` are merged entry by entry on ``field``, ``phone``
  entries replace the entry of the same ``ordinal``; any other field is set.
- Read answers the contact with its read-only fields added.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from lvgateway.sandbox.livevox_records import LiveVoxError
from lvgateway.sandbox.sandbox_config import CONTACT_FIELDS

#: The body LiveVox answers to a create of an account it has [C:EOSPY, literal].
DUPLICATE_MESSAGE = "Contact already exists!"
NOT_FOUND_MESSAGE = "Contact not found"

_DEEP_MERGED = ("person", "guarantor")


def _bad(message: str) -> LiveVoxError:
    return LiveVoxError(400, message)


def _deep_merge(into: dict[str, Any], update: Mapping[str, Any]) -> None:
    for key, value in update.items():
        current = into.get(key)
        if isinstance(current, dict) and isinstance(value, Mapping):
            _deep_merge(current, value)
        else:
            into[key] = copy.deepcopy(value)


def _account(value: Any, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int) or str(value).strip() == "":
        raise _bad(f"{where} is required")
    return str(value).strip()


def _phones(value: Any) -> dict[int, dict[str, Any]]:
    if not isinstance(value, list):
        raise _bad("phone must be an array")
    phones: dict[int, dict[str, Any]] = {}
    for i, entry in enumerate(value):
        if not isinstance(entry, Mapping):
            raise _bad(f"phone[{i}] must be an object")
        ordinal = entry.get("ordinal")
        if isinstance(ordinal, str) and ordinal.isdigit():
            ordinal = int(ordinal)
        if isinstance(ordinal, bool) or not isinstance(ordinal, int) or not 1 <= ordinal <= 10:
            raise _bad(f"phone[{i}].ordinal must be 1 to 10")
        if not isinstance(entry.get("phone"), str | int):
            raise _bad(f"phone[{i}].phone is required")
        phone = dict(copy.deepcopy(entry))
        phone["ordinal"] = ordinal
        phone["phone"] = str(entry["phone"])
        phones[ordinal] = phone
    return phones


def _custom_fields(value: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(value, list):
        raise _bad("customFields must be an array")
    fields: dict[str, dict[str, Any]] = {}
    for i, entry in enumerate(value):
        if not isinstance(entry, Mapping) or not isinstance(entry.get("field"), str):
            raise _bad(f"customFields[{i}].field is required")
        fields[entry["field"]] = dict(copy.deepcopy(entry))
    return fields


@attrs.define
class _Contact:
    """One stored contact: its fields plus the simulator's bookkeeping."""

    id: int
    fields: dict[str, Any]
    phones: dict[int, dict[str, Any]]
    custom_fields: dict[str, dict[str, Any]]
    created_ms: int
    modified_ms: int


@attrs.define
class ContactStore:
    """The contacts of the simulated client, by account number.

    :param clock: the simulator's clock, for create and modify dates.
    """

    clock: IReactorTime
    _contacts: dict[str, _Contact] = attrs.field(factory=dict)
    _next_id: int = 100001
    log = Logger()

    def _now_ms(self) -> int:
        return int(self.clock.seconds() * 1000)

    def load(self, contacts: Iterable[Mapping[str, Any]]) -> None:
        """Add configured contacts, as if each had been created.

        :param contacts: contacts in LiveVox's shape.
        """
        for contact in contacts:
            self.create(contact)

    def create(self, details: Any) -> tuple[int, list[str]]:
        """Create a contact from a ``createContactDetails`` object.

        :param details: the object inside ``createContactDetails``.
        :return: the new contact's id, and the names of fields the simulator
            does not know (stored anyway).
        :raises LiveVoxError: 400 on an invalid body; 202 with
            :data:`DUPLICATE_MESSAGE` when the account exists.
        """
        if not isinstance(details, Mapping):
            raise _bad("createContactDetails must be an object")
        account = _account(details.get("account"), "account")
        if account in self._contacts:
            raise LiveVoxError(202, DUPLICATE_MESSAGE)
        for key in _DEEP_MERGED:
            if key in details and not isinstance(details[key], Mapping):
                raise _bad(f"{key} must be an object")
        phones = _phones(details["phone"]) if "phone" in details else {}
        customs = _custom_fields(details["customFields"]) if "customFields" in details else {}
        fields = {
            k: copy.deepcopy(v) for k, v in details.items() if k not in ("phone", "customFields")
        }
        fields["account"] = account
        now = self._now_ms()
        contact = _Contact(self._next_id, fields, phones, customs, now, now)
        self._next_id += 1
        self._contacts[account] = contact
        unknown = sorted(k for k in details if k not in CONTACT_FIELDS)
        self.log.info("contact {account} created with id {id}", account=account, id=contact.id)
        return contact.id, unknown

    def update(self, account: str, details: Any) -> list[str]:
        """Apply an ``updateContactDetails`` object to the contact of ``account``.

        :param account: the account number from the URL.
        :param details: the object inside ``updateContactDetails``.
        :return: the names of fields the simulator does not know (stored anyway).
        :raises LiveVoxError: 404 for an unknown account, 400 on an invalid body.
        """
        contact = self._contacts.get(account)
        if contact is None:
            raise LiveVoxError(404, NOT_FOUND_MESSAGE)
        if not isinstance(details, Mapping):
            raise _bad("updateContactDetails must be an object")
        if "account" in details and _account(details["account"], "account") != account:
            raise _bad("account in the body does not match the account in the URL")
        for key in _DEEP_MERGED:
            if key in details and not isinstance(details[key], Mapping):
                raise _bad(f"{key} must be an object")
        # validate everything before changing anything
        phones = _phones(details["phone"]) if "phone" in details else {}
        customs = _custom_fields(details["customFields"]) if "customFields" in details else {}
        for key, value in details.items():
            if key in ("phone", "customFields", "account"):
                continue
            current = contact.fields.get(key)
            if key in _DEEP_MERGED and isinstance(current, dict):
                _deep_merge(current, value)
            else:
                contact.fields[key] = copy.deepcopy(value)
        contact.phones.update(phones)
        for field, entry in customs.items():
            contact.custom_fields.setdefault(field, {}).update(entry)
        contact.modified_ms = self._now_ms()
        self.log.info("contact {account} updated: {keys}", account=account, keys=sorted(details))
        return sorted(k for k in details if k not in CONTACT_FIELDS)

    def read(self, account: str) -> dict[str, Any]:
        """Return the contact of ``account`` as ``readContactDetails`` shows it.

        Custom fields carry their value in ``label`` too: LiveVox's own code
        says the platform "uses 'value' for creation and uses 'label' for
        retrieval" [C:LVJAVA], so a reader finds it under either name.

        :raises LiveVoxError: 404 for an unknown account.
        """
        contact = self._contacts.get(account)
        if contact is None:
            raise LiveVoxError(404, NOT_FOUND_MESSAGE)
        result = copy.deepcopy(contact.fields)
        if contact.phones:
            result["phone"] = [copy.deepcopy(contact.phones[o]) for o in sorted(contact.phones)]
        if contact.custom_fields:
            customs = []
            for field in sorted(contact.custom_fields, key=_field_order):
                entry = copy.deepcopy(contact.custom_fields[field])
                entry.setdefault("label", entry.get("value"))
                customs.append(entry)
            result["customFields"] = customs
        result.update(
            callAttemptsToday=0,
            callAttemptsTotal=0,
            createDate=str(contact.created_ms),
            modifyDate=str(contact.modified_ms),
            initialLoad=str(contact.created_ms),
            lastLoad=str(contact.modified_ms),
        )
        return result

    def get(self, account: str) -> dict[str, Any] | None:
        """Return the contact of ``account`` as :meth:`read` would, or ``None``."""
        if account not in self._contacts:
            return None
        return self.read(account)

    def accounts(self) -> list[str]:
        """Return every account number, sorted."""
        return sorted(self._contacts)


def _field_order(field: str) -> tuple[int, str]:
    digits = "".join(c for c in field if c.isdigit())
    return (int(digits) if digits else 0, field)
