"""The six SAP S/4HANA OData V2 services the sandbox serves, as a subset of their real models.

Names, types, lengths and the ``sap:creatable``/``sap:updatable`` flags are copied from SAP's
published metadata (see ``docs/sap-api.md`` for each source):

- ``API_SALES_ORDER_SRV`` and ``API_PRODUCT_SRV``: the EDMX copies in
  gregorwolf/teched2020-DT261-cap ``srv/external/``.
- ``API_SLSPRICINGCONDITIONRECORD_SRV``: the SAP Cloud SDK client generated from its metadata
  (gregorwolf/epmbp-consumer-app ``srv/odata-client/slspricingconditionrecord-service``).
- ``API_EQUIPMENT``: responses of SAP's API sandbox (latonaio sap-api-integrations-equipment-master-reads).
- ``API_PRODUCT_AVAILY_INFO_BASIC``: the CDS import of its metadata
  (aliceminjipark/btp-extension-s4-material-availability).
- ``API_BUSINESS_PARTNER`` (``A_Customer`` only): the EDMX copy in
  SAP-samples/cloud-cap-risk-management ``srv/external/API_BUSINESS_PARTNER.edmx``.

Only the properties the hub reads or writes, plus those that shape behaviour (keys, status and
change stamps, the concurrency token), are modelled; a payload naming any other property is
refused as the real service refuses an unknown property.
"""

from __future__ import annotations

from dataclasses import replace

from sandbox.sap.odata import (
    BOOLEAN,
    DATETIME,
    DATETIMEOFFSET,
    DECIMAL,
    ComplexType,
    EntitySet,
    FunctionImport,
    Nav,
    Param,
    Prop,
    Service,
)


def _ro(prop: Prop) -> Prop:
    """sap:creatable="false" sap:updatable="false"."""
    return replace(prop, creatable=False, updatable=False)


# ---- API_SALES_ORDER_SRV ---------------------------------------------------------------------
SALES_ORDER = EntitySet(
    name="A_SalesOrder",
    type_name="A_SalesOrderType",
    label="Sales Order Header",
    keys=("SalesOrder",),
    creatable=True,
    updatable=True,
    deletable=True,
    props=(
        Prop("SalesOrder", max_length=10, nullable=False, alpha=True, label="Sales Order"),
        Prop("SalesOrderType", max_length=4),
        Prop("SalesOrganization", max_length=4),
        Prop("DistributionChannel", max_length=2),
        Prop("OrganizationDivision", max_length=2),
        Prop("SalesGroup", max_length=3),
        Prop("SalesOffice", max_length=4),
        Prop("SalesDistrict", max_length=6),
        Prop("SoldToParty", max_length=10, alpha=True),
        _ro(Prop("CreationDate", DATETIME)),
        _ro(Prop("CreatedByUser", max_length=12)),
        _ro(Prop("LastChangeDate", DATETIME)),
        _ro(Prop("LastChangeDateTime", DATETIMEOFFSET, concurrency=True, label="Time Stamp")),
        Prop("PurchaseOrderByCustomer", max_length=35, label="Customer Reference"),
        Prop("CustomerPurchaseOrderType", max_length=4),
        Prop("CustomerPurchaseOrderDate", DATETIME),
        Prop("SalesOrderDate", DATETIME),
        _ro(
            Prop(
                "TotalNetAmount",
                DECIMAL,
                precision=16,
                scale=3,
                unit="TransactionCurrency",
                amount=True,
            )
        ),
        Prop("TransactionCurrency", max_length=5),
        Prop("SDDocumentReason", max_length=3),
        Prop("PricingDate", DATETIME),
        Prop("RequestedDeliveryDate", DATETIME),
        Prop("ShippingCondition", max_length=2),
        Prop("CompleteDeliveryIsDefined", BOOLEAN),
        Prop("IncotermsClassification", max_length=3),
        Prop("IncotermsLocation1", max_length=70),
        Prop("CustomerPaymentTerms", max_length=4),
        Prop("HeaderBillingBlockReason", max_length=2),
        Prop("DeliveryBlockReason", max_length=2),
        _ro(Prop("OverallSDProcessStatus", max_length=1, label="Overall Status")),
        _ro(Prop("TotalCreditCheckStatus", max_length=1)),
        _ro(Prop("OverallTotalDeliveryStatus", max_length=1)),
    ),
    navs=(
        Nav("to_Item", "A_SalesOrderItem", True, (("SalesOrder", "SalesOrder"),)),
        Nav("to_Partner", "A_SalesOrderHeaderPartner", True, (("SalesOrder", "SalesOrder"),)),
    ),
)

SALES_ORDER_ITEM = EntitySet(
    name="A_SalesOrderItem",
    type_name="A_SalesOrderItemType",
    label="Sales Order Item",
    keys=("SalesOrder", "SalesOrderItem"),
    updatable=True,
    deletable=True,
    props=(
        _ro(Prop("SalesOrder", max_length=10, nullable=False, alpha=True)),
        Prop("SalesOrderItem", max_length=6, nullable=False, alpha=True),
        Prop("HigherLevelItem", max_length=6, alpha=True),
        Prop("SalesOrderItemCategory", max_length=4),
        Prop("SalesOrderItemText", max_length=40),
        Prop("PurchaseOrderByCustomer", max_length=35),
        Prop("Material", max_length=40, alpha=True),
        Prop("MaterialByCustomer", max_length=35),
        Prop("PricingDate", DATETIME),
        Prop("RequestedQuantity", DECIMAL, precision=15, scale=3, unit="RequestedQuantityUnit"),
        Prop("RequestedQuantityUnit", max_length=3),
        _ro(Prop("TransactionCurrency", max_length=5)),
        _ro(
            Prop(
                "NetAmount", DECIMAL, precision=16, scale=3, unit="TransactionCurrency", amount=True
            )
        ),
        Prop("MaterialGroup", max_length=9),
        Prop("ProductionPlant", max_length=4),
        Prop("StorageLocation", max_length=4),
        Prop("ShippingPoint", max_length=4),
        Prop("SalesDocumentRjcnReason", max_length=2),
        Prop("ItemBillingBlockReason", max_length=2),
        _ro(Prop("SDProcessStatus", max_length=1)),
        _ro(Prop("DeliveryStatus", max_length=1)),
    ),
    navs=(Nav("to_SalesOrder", "A_SalesOrder", False, (("SalesOrder", "SalesOrder"),)),),
)

SALES_ORDER_PARTNER = EntitySet(
    name="A_SalesOrderHeaderPartner",
    type_name="A_SalesOrderHeaderPartnerType",
    label="Header Partner",
    keys=("SalesOrder", "PartnerFunction"),
    props=(
        _ro(Prop("SalesOrder", max_length=10, nullable=False, alpha=True)),
        Prop("PartnerFunction", max_length=2, nullable=False),
        Prop("Customer", max_length=10, alpha=True),
        Prop("Supplier", max_length=10, alpha=True),
        Prop("Personnel", max_length=8, alpha=True),
        Prop("ContactPerson", max_length=10, alpha=True),
    ),
    navs=(Nav("to_SalesOrder", "A_SalesOrder", False, (("SalesOrder", "SalesOrder"),)),),
)

SALES_ORDER_SRV = Service(
    name="API_SALES_ORDER_SRV",
    component="SD-SLS-API",
    sets={s.name: s for s in (SALES_ORDER, SALES_ORDER_ITEM, SALES_ORDER_PARTNER)},
)

# ---- API_PRODUCT_SRV -------------------------------------------------------------------------
PRODUCT = EntitySet(
    name="A_Product",
    type_name="A_ProductType",
    label="Product",
    keys=("Product",),
    props=(
        Prop("Product", max_length=40, nullable=False, alpha=True),
        Prop("ProductType", max_length=4),
        Prop("CrossPlantStatus", max_length=2),
        _ro(Prop("CreationDate", DATETIME)),
        _ro(Prop("CreatedByUser", max_length=12)),
        _ro(Prop("LastChangeDate", DATETIME)),
        _ro(Prop("LastChangedByUser", max_length=12)),
        # Change stamp, but not a concurrency token in API_PRODUCT_SRV: products carry no ETag.
        _ro(Prop("LastChangeDateTime", DATETIMEOFFSET)),
        Prop("IsMarkedForDeletion", BOOLEAN),
        Prop("GrossWeight", DECIMAL, precision=13, scale=3, unit="WeightUnit"),
        Prop("WeightUnit", max_length=3),
        Prop("NetWeight", DECIMAL, precision=13, scale=3, unit="WeightUnit"),
        Prop("ProductGroup", max_length=9),
        Prop("BaseUnit", max_length=3),
        Prop("ItemCategoryGroup", max_length=4),
        Prop("ProductHierarchy", max_length=18),
        Prop("Division", max_length=2),
    ),
    navs=(
        Nav("to_Description", "A_ProductDescription", True, (("Product", "Product"),)),
        Nav("to_Plant", "A_ProductPlant", True, (("Product", "Product"),)),
    ),
)

PRODUCT_DESCRIPTION = EntitySet(
    name="A_ProductDescription",
    type_name="A_ProductDescriptionType",
    label="Product Description",
    keys=("Product", "Language"),
    props=(
        Prop("Product", max_length=40, nullable=False, alpha=True),
        Prop("Language", max_length=2, nullable=False),
        Prop("ProductDescription", max_length=40),
    ),
)

PRODUCT_PLANT = EntitySet(
    name="A_ProductPlant",
    type_name="A_ProductPlantType",
    label="Plant",
    keys=("Product", "Plant"),
    props=(
        Prop("Product", max_length=40, nullable=False, alpha=True),
        Prop("Plant", max_length=4, nullable=False),
        Prop("AvailabilityCheckType", max_length=2),
        Prop("MRPType", max_length=2),
        Prop("ProfitCenter", max_length=10),
        Prop("IsMarkedForDeletion", BOOLEAN),
    ),
)

PRODUCT_SRV = Service(
    name="API_PRODUCT_SRV",
    component="LO-MD-MM",
    sets={s.name: s for s in (PRODUCT, PRODUCT_DESCRIPTION, PRODUCT_PLANT)},
)

# ---- API_SLSPRICINGCONDITIONRECORD_SRV -------------------------------------------------------
CONDITION_RECORD = EntitySet(
    name="A_SlsPrcgConditionRecord",
    type_name="A_SlsPrcgConditionRecordType",
    label="Condition Record",
    keys=("ConditionRecord",),
    props=(
        Prop("ConditionRecord", max_length=10, nullable=False, alpha=True),
        Prop("ConditionSequentialNumber", max_length=2),
        Prop("ConditionTable", max_length=3),
        Prop("ConditionApplication", max_length=2),
        Prop("ConditionType", max_length=4),
        Prop("ConditionValidityEndDate", DATETIME),
        Prop("ConditionValidityStartDate", DATETIME),
        _ro(Prop("CreatedByUser", max_length=12)),
        _ro(Prop("CreationDate", DATETIME)),
        Prop("ConditionRateValue", DECIMAL, precision=24, scale=9),
        Prop("ConditionRateValueUnit", max_length=5),
        Prop("ConditionQuantity", DECIMAL, precision=5, scale=0, unit="ConditionQuantityUnit"),
        Prop("ConditionQuantityUnit", max_length=3),
        Prop("BaseUnit", max_length=3),
        Prop("ConditionIsDeleted", BOOLEAN),
    ),
    navs=(
        Nav(
            "to_SlsPrcgCndnRecdValidity",
            "A_SlsPrcgCndnRecdValidity",
            True,
            (("ConditionRecord", "ConditionRecord"),),
        ),
    ),
)

CONDITION_VALIDITY = EntitySet(
    name="A_SlsPrcgCndnRecdValidity",
    type_name="A_SlsPrcgCndnRecdValidityType",
    label="Condition Record Validity",
    keys=("ConditionRecord", "ConditionValidityEndDate"),
    props=(
        Prop("ConditionRecord", max_length=10, nullable=False, alpha=True),
        Prop("ConditionValidityEndDate", DATETIME, nullable=False),
        Prop("ConditionValidityStartDate", DATETIME),
        Prop("ConditionApplication", max_length=2),
        Prop("ConditionType", max_length=4),
        Prop("ConditionReleaseStatus", max_length=1),
        Prop("SalesOrganization", max_length=4),
        Prop("DistributionChannel", max_length=2),
        Prop("Division", max_length=2),
        Prop("Customer", max_length=10, alpha=True),
        Prop("Material", max_length=40, alpha=True),
        Prop("Plant", max_length=4),
    ),
    navs=(
        Nav(
            "to_SlsPrcgConditionRecord",
            "A_SlsPrcgConditionRecord",
            False,
            (("ConditionRecord", "ConditionRecord"),),
        ),
    ),
)

PRICING_SRV = Service(
    name="API_SLSPRICINGCONDITIONRECORD_SRV",
    component="SD-MD-CM",
    sets={s.name: s for s in (CONDITION_RECORD, CONDITION_VALIDITY)},
)

# ---- API_EQUIPMENT ---------------------------------------------------------------------------
EQUIPMENT = EntitySet(
    name="Equipment",
    type_name="EquipmentType",
    label="Equipment",
    keys=("Equipment", "ValidityEndDate"),
    props=(
        Prop("Equipment", max_length=18, nullable=False, alpha=True),
        Prop("ValidityEndDate", DATETIME, nullable=False),
        Prop("ValidityStartDate", DATETIME),
        Prop("EquipmentName", max_length=40),
        Prop("EquipmentCategory", max_length=1),
        Prop("TechnicalObjectType", max_length=10),
        Prop("GrossWeight", DECIMAL, precision=13, scale=3, unit="GrossWeightUnit"),
        Prop("GrossWeightUnit", max_length=3),
        Prop("InventoryNumber", max_length=25),
        Prop("AcquisitionValue", DECIMAL, precision=13, scale=2, unit="Currency", amount=True),
        Prop("Currency", max_length=5),
        Prop("AssetManufacturerName", max_length=30),
        Prop("ManufacturerPartTypeName", max_length=20),
        Prop("ManufacturerSerialNumber", max_length=30),
        Prop("MaintenancePlant", max_length=4),
        Prop("FunctionalLocation", max_length=40),
        Prop("SuperordinateEquipment", max_length=18, alpha=True),
        Prop("Material", max_length=40, alpha=True),
        Prop("SerialNumber", max_length=18),
        _ro(Prop("CreationDate", DATETIME)),
        _ro(Prop("LastChangeDateTime", DATETIMEOFFSET)),
        Prop("EquipmentIsMarkedForDeletion", BOOLEAN),
    ),
    navs=(Nav("to_Partner", "EquipmentPartner", True, (("Equipment", "Equipment"),)),),
)

EQUIPMENT_PARTNER = EntitySet(
    name="EquipmentPartner",
    type_name="EquipmentPartnerType",
    label="Equipment Partner",
    keys=("Equipment", "PartnerFunction", "EquipmentPartnerObjectNmbr"),
    props=(
        Prop("Equipment", max_length=18, nullable=False, alpha=True),
        Prop("PartnerFunction", max_length=2, nullable=False),
        Prop("EquipmentPartnerObjectNmbr", max_length=6, nullable=False, alpha=True),
        Prop("Partner", max_length=12, alpha=True),
        _ro(Prop("CreationDate", DATETIME)),
    ),
)

EQUIPMENT_SRV = Service(
    name="API_EQUIPMENT",
    component="PM-EQM-EQ",
    sets={s.name: s for s in (EQUIPMENT, EQUIPMENT_PARTNER)},
)

# ---- API_BUSINESS_PARTNER (customer master) -------------------------------------------------
CUSTOMER = EntitySet(
    name="A_Customer",
    type_name="A_CustomerType",
    label="Customer",
    keys=("Customer",),
    props=(
        # KUNNR: SAP keeps customer numbers unique, so one number is one customer.
        Prop("Customer", max_length=10, nullable=False, alpha=True, label="Customer"),
        Prop("CustomerAccountGroup", max_length=4, label="Account Group"),
        _ro(Prop("CustomerName", max_length=80, label="Name of Customer")),
        _ro(Prop("CustomerFullName", max_length=220, label="Customer Name")),
        _ro(Prop("CreationDate", DATETIME, label="Created On")),
        _ro(Prop("CreatedByUser", max_length=12, label="Created by")),
        Prop("OrderIsBlockedForCustomer", max_length=2, label="Order Block"),
        Prop("DeliveryIsBlocked", max_length=2, label="Delivery block"),
        Prop("BillingIsBlockedForCustomer", max_length=2, label="Billing Block"),
        Prop("PostingIsBlocked", BOOLEAN, label="Posting Block"),
        Prop("DeletionIndicator", BOOLEAN, label="Deletion flag"),
    ),
)

BUSINESS_PARTNER_SRV = Service(
    name="API_BUSINESS_PARTNER",
    component="LO-MD-BP",
    sets={s.name: s for s in (CUSTOMER,)},
)

# ---- API_PRODUCT_AVAILY_INFO_BASIC -----------------------------------------------------------
AVAILABILITY_RECORD = ComplexType(
    name="AvailabilityRecord",
    props=(
        Prop("PeriodStartUTCDateTime", DATETIME, nullable=False),
        Prop("PeriodStartTimeZone", max_length=6, nullable=False),
        Prop("PeriodEndUTCDateTime", DATETIME, nullable=False),
        Prop("PeriodEndTimeZone", max_length=6, nullable=False),
        Prop(
            "AvailableQuantityInBaseUnit",
            DECIMAL,
            precision=16,
            scale=3,
            nullable=False,
            unit="BaseUnit",
        ),
        Prop("BaseUnit", max_length=3, nullable=False),
    ),
)

_MATERIAL = Param("Material", "Edm.String", max_length=40)
_PLANT = Param("SupplyingPlant", "Edm.String", max_length=4)
_RULE = Param("ATPCheckingRule", "Edm.String", max_length=2)

AVAILABILITY_SRV = Service(
    name="API_PRODUCT_AVAILY_INFO_BASIC",
    component="CA-ATP",
    sets={},
    complex_types={AVAILABILITY_RECORD.name: AVAILABILITY_RECORD},
    functions={
        "DetermineAvailabilityAt": FunctionImport(
            "DetermineAvailabilityAt",
            "AvailabilityRecord",
            False,
            (_PLANT, _MATERIAL, _RULE, Param("RequestedUTCDateTime", DATETIMEOFFSET)),
        ),
        "DetermineAvailabilityOf": FunctionImport(
            "DetermineAvailabilityOf",
            "AvailabilityRecord",
            False,
            (
                Param("RequestedQuantityInBaseUnit", DECIMAL, precision=13, scale=3),
                _MATERIAL,
                _PLANT,
                _RULE,
            ),
        ),
        "CalculateAvailabilityTimeseries": FunctionImport(
            "CalculateAvailabilityTimeseries",
            "AvailabilityRecord",
            True,
            (_RULE, _MATERIAL, _PLANT),
        ),
    },
)

SERVICES = {
    s.name: s
    for s in (
        SALES_ORDER_SRV,
        PRODUCT_SRV,
        PRICING_SRV,
        EQUIPMENT_SRV,
        AVAILABILITY_SRV,
        BUSINESS_PARTNER_SRV,
    )
}
ENTITY_SETS = {
    name: (service, entity_set)
    for service in SERVICES.values()
    for name, entity_set in service.sets.items()
}
