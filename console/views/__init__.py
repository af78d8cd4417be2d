"""One view per file; VIEWS is the order of the `:` completion and the help screen."""

from __future__ import annotations

from console.views.base import View
from console.views.billing import BillingView
from console.views.clients import ClientsView
from console.views.events import EventsView
from console.views.fleet import FleetView
from console.views.loops import LoopsView
from console.views.models import ModelsView
from console.views.overview import OverviewView
from console.views.provision import ProvisionView

VIEWS: dict[str, type[View]] = {v.view_name: v for v in (OverviewView, ModelsView, FleetView, ClientsView, BillingView,
                                                                  EventsView, ProvisionView, LoopsView)}

__all__ = ["VIEWS", "View"]
