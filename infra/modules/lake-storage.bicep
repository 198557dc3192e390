// The data lake: an ADLS Gen2 account (hierarchical namespace) with the bronze, silver and gold
// containers, and the Azure Tables the hub keeps its state in (watermarks, idempotency markers,
// couplings, rejections). Entra-only (shared keys disabled), TLS 1.2, HTTPS only, no public blob
// access, firewalled or private. Old bronze pages move to cheaper tiers by a lifecycle policy.

@description('Name of the storage account (3-24 lower-case letters and digits).')
param name string

@description('Azure region.')
param location string

@description('Tags applied to every resource.')
param tags object

// Named lakeSku, not skuName: checkov resolves a parameter by its name across the files it scans,
// and host-storage.bicep's skuName would otherwise be taken for this one.
@description('Replication of the lake. Geo-redundant by default: bronze is the system of record for what the hub received. The archive tier exists only on LRS, GRS and RA-GRS accounts, so on a zone-redundant SKU the archive rule is left out.')
@allowed([
  'Standard_LRS'
  'Standard_GRS'
  'Standard_RAGRS'
  'Standard_ZRS'
  'Standard_GZRS'
  'Standard_RAGZRS'
])
param lakeSku string = 'Standard_GRS'

@description('Days after which a bronze page moves to the cool tier.')
@minValue(1)
param bronzeCoolAfterDays int

@description('Days after which a bronze page moves to the archive tier (0: never). Archived pages must be rehydrated before a replay from bronze can read them.')
@minValue(0)
param bronzeArchiveAfterDays int

@description('Days a deleted blob or container can be restored (soft delete).')
@minValue(1)
@maxValue(365)
param softDeleteRetentionDays int

@description('public: firewalled public endpoint; private: private endpoints only.')
@allowed([
  'public'
  'private'
])
param networkMode string

@description('The Function App integration subnet, admitted by the firewall in public mode.')
param appSubnetId string

@description('Public IP addresses or CIDR ranges admitted by the firewall in public mode (operators, reporting gateways).')
param allowedIpRanges array

@description('Principal id of the hub identity.')
param appPrincipalId string

var publicMode = networkMode == 'public'
var layers = [
  'bronze'
  'silver'
  'gold'
]
var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
var storageTableDataContributor = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
var ipRules = [for range in allowedIpRanges: {
  value: range
  action: 'Allow'
}]
var archiveSupported = !contains(lakeSku, 'ZRS')
var toCool = {
  tierToCool: {
    daysAfterModificationGreaterThan: bronzeCoolAfterDays
  }
}
var toArchive = {
  tierToArchive: {
    daysAfterModificationGreaterThan: bronzeArchiveAfterDays
  }
}
var bronzeActions = archiveSupported && bronzeArchiveAfterDays > 0 ? union(toCool, toArchive) : toCool

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: lakeSku
  }
  properties: {
    isHnsEnabled: true
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: publicMode ? 'Enabled' : 'Disabled'
    networkAcls: {
      defaultAction: 'Deny'
      bypass: 'AzureServices'
      virtualNetworkRules: publicMode ? [
        {
          id: appSubnetId
          action: 'Allow'
        }
      ] : []
      ipRules: publicMode ? ipRules : []
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: softDeleteRetentionDays
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: softDeleteRetentionDays
    }
  }
}

resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [for layer in layers: {
  parent: blobService
  name: layer
  properties: {
    publicAccess: 'None'
  }
}]

resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'bronze-to-colder-tiers'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                'bronze/'
              ]
            }
            actions: {
              baseBlob: bronzeActions
            }
          }
        }
      ]
    }
  }
}

// One assignment per layer container rather than the account: the hub reads and writes only these
// three containers (shared/lake/storage.py LAYERS).
resource layerBlobContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (layer, i) in layers: {
  name: guid(containers[i].id, appPrincipalId, storageBlobDataContributor)
  scope: containers[i]
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
  }
}]

// Account scope: the hub creates its state tables on first use (shared/adapters/tables.py), and a
// table that does not exist yet cannot be a role-assignment scope.
resource tableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, appPrincipalId, storageTableDataContributor)
  scope: account
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributor)
  }
}

output id string = account.id
output name string = account.name
output blobEndpoint string = account.properties.primaryEndpoints.blob
output tableEndpoint string = account.properties.primaryEndpoints.table
