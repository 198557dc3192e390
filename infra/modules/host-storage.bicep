// The Functions host's own storage account (AzureWebJobsStorage): timer schedule leases, host keys,
// and the Flex Consumption deployment container the app package is uploaded to. Reached only with
// the managed identity (shared keys disabled), only from the app's subnet or a private endpoint.

@description('Name of the storage account (3-24 lower-case letters and digits).')
param name string

@description('Azure region.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Replication. Host storage holds only state the platform re-creates (leases, keys, the last deployed package), so zone or local redundancy is enough.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
])
param skuName string

@description('Blob container Flex Consumption deploys the app package to.')
param deploymentContainerName string

@description('public: firewalled public endpoint; private: private endpoint only.')
@allowed([
  'public'
  'private'
])
param networkMode string

@description('The Function App integration subnet, admitted by the firewall in public mode.')
param appSubnetId string

@description('Public IP addresses or CIDR ranges admitted by the firewall in public mode (operators).')
param allowedIpRanges array

@description('Principal id of the hub identity.')
param appPrincipalId string

var publicMode = networkMode == 'public'
var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var ipRules = [for range in allowedIpRanges: {
  value: range
  action: 'Allow'
}]

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_206: Host storage holds only platform state that is re-created on start or redeploy (timer leases, host keys, the deployed package); geo-replication would add cost without a recovery path, since a regional outage stops the Function App as well.
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
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
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

// Account scope, not a container: the host creates its own containers (azure-webjobs-hosts,
// azure-webjobs-secrets) at run time, and Flex reads the deployment container.
resource hostBlobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, appPrincipalId, storageBlobDataOwner)
  scope: account
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwner)
  }
}

output id string = account.id
output name string = account.name
output deploymentContainerUrl string = '${account.properties.primaryEndpoints.blob}${deploymentContainerName}'
