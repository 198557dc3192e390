"""EDMX ($metadata) documents generated from the sandbox's service models."""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import quoteattr

from sandbox.sap.odata import DATETIMEOFFSET, EntitySet, Prop, Service


def metadata_xml(service: Service) -> str:
    """A V2 EDMX document for ``service`` (what SAP Gateway serves at ``$metadata``)."""
    ns = service.name
    lines = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<edmx:Edmx Version="1.0" xmlns:edmx="http://schemas.microsoft.com/ado/2007/06/edmx" '
        'xmlns:m="http://schemas.microsoft.com/ado/2007/08/dataservices/metadata" '
        'xmlns:sap="http://www.sap.com/Protocols/SAPData">',
        '<edmx:DataServices m:DataServiceVersion="2.0">',
        f'<Schema Namespace="{ns}" xml:lang="en" sap:schema-version="1" xmlns="http://schemas.microsoft.com/ado/2008/09/edm">',
    ]

    def prop_xml(prop: Prop) -> str:
        attrs = [f'Name="{prop.name}"', f'Type="{prop.type}"']
        if not prop.nullable:
            attrs.append('Nullable="false"')
        if prop.max_length is not None:
            attrs.append(f'MaxLength="{prop.max_length}"')
        if prop.precision is not None:
            attrs.append(f'Precision="{prop.precision}"')
        if prop.scale is not None:
            attrs.append(f'Scale="{prop.scale}"')
        if prop.type == DATETIMEOFFSET:
            attrs.append('Precision="7"')
        if prop.concurrency:
            attrs.append('ConcurrencyMode="Fixed"')
        if prop.unit:
            attrs.append(f'sap:unit="{prop.unit}"')
        if prop.label:
            attrs.append(f"sap:label={quoteattr(prop.label)}")
        if not prop.creatable:
            attrs.append('sap:creatable="false"')
        if not prop.updatable:
            attrs.append('sap:updatable="false"')
        return "<Property " + " ".join(attrs) + "/>"

    associations: list[tuple[str, EntitySet, Any]] = []
    for entity_set in service.sets.values():
        label = f" sap:label={quoteattr(entity_set.label)}" if entity_set.label else ""
        lines.append(f'<EntityType Name="{entity_set.type_name}"{label} sap:content-version="1">')
        lines.append(
            "<Key>" + "".join(f'<PropertyRef Name="{k}"/>' for k in entity_set.keys) + "</Key>"
        )
        lines.extend(prop_xml(p) for p in entity_set.props)
        for nav in entity_set.navs:
            assoc = f"assoc_{entity_set.name}_{nav.name}"
            associations.append((assoc, entity_set, nav))
            lines.append(
                f'<NavigationProperty Name="{nav.name}" Relationship="{ns}.{assoc}" '
                f'FromRole="FromRole_{assoc}" ToRole="ToRole_{assoc}"/>'
            )
        lines.append("</EntityType>")
    for complex_type in service.complex_types.values():
        lines.append(f'<ComplexType Name="{complex_type.name}">')
        lines.extend(prop_xml(p) for p in complex_type.props)
        lines.append("</ComplexType>")
    for assoc, entity_set, nav in associations:
        target = service.sets[nav.target]
        lines.append(
            f'<Association Name="{assoc}" sap:content-version="1">'
            f'<End Type="{ns}.{entity_set.type_name}" Multiplicity="1" Role="FromRole_{assoc}"/>'
            f'<End Type="{ns}.{target.type_name}" Multiplicity="{"*" if nav.many else "0..1"}" Role="ToRole_{assoc}"/>'
            "</Association>"
        )
    lines.append(
        f'<EntityContainer Name="{ns}_Entities" m:IsDefaultEntityContainer="true" sap:supported-formats="atom json xlsx">'
    )
    for entity_set in service.sets.values():
        flags = " ".join(
            f'sap:{flag}="false"'
            for flag, allowed in (
                ("creatable", entity_set.creatable),
                ("updatable", entity_set.updatable),
                ("deletable", entity_set.deletable),
            )
            if not allowed
        )
        lines.append(
            f'<EntitySet Name="{entity_set.name}" EntityType="{ns}.{entity_set.type_name}" {flags} sap:content-version="1"/>'
        )
    for assoc, entity_set, nav in associations:
        lines.append(
            f'<AssociationSet Name="{assoc}" Association="{ns}.{assoc}" sap:creatable="false" sap:updatable="false" sap:deletable="false" sap:content-version="1">'
            f'<End EntitySet="{entity_set.name}" Role="FromRole_{assoc}"/><End EntitySet="{nav.target}" Role="ToRole_{assoc}"/>'
            "</AssociationSet>"
        )
    for function in service.functions.values():
        returns = f"{ns}.{function.return_type}"
        if function.many:
            returns = f"Collection({returns})"
        lines.append(
            f'<FunctionImport Name="{function.name}" ReturnType="{returns}" m:HttpMethod="{function.http_method}">'
        )
        for param in function.params:
            extra = f' MaxLength="{param.max_length}"' if param.max_length else ""
            if param.precision is not None:
                extra += f' Precision="{param.precision}" Scale="{param.scale or 0}"'
            lines.append(f'<Parameter Name="{param.name}" Type="{param.type}" Mode="In"{extra}/>')
        lines.append("</FunctionImport>")
    lines.extend(["</EntityContainer>", "</Schema>", "</edmx:DataServices>", "</edmx:Edmx>"])
    return "\n".join(lines)
