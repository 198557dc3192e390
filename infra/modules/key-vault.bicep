// The Key Vault holding the hub's secrets (names only in app settings; shared/adapters/secrets.py
// reads them with the managed identity). RBAC mode, soft delete with purge protection, firewalled or
// private. The vault is created empty: secret values are set by an operator (docs/deploy.md), never
// by a template, so a redeployment can never overwrite a rotated secret.

@description('Name of the vault (3-24 characters, globally unique; a soft-deleted vault keeps its name for the retention period).')
param name string

@description('Azure region.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Days a deleted vault or secret can be recovered (purge protection forbids purging it sooner).')
@minValue(7)
@maxValue(90)
param softDeleteRetentionInDays int

@description('public: firewalled public endpoint; private: private endpoint only.')
@allowed([
  'public'
  'private'
])
param networkMode string

@description('The Function App integration subnet, admitted by the firewall in public mode.')
param appSubnetId string

@description('Public IP addresses or CIDR ranges admitted by the firewall in public mode (operators setting secrets).')
param allowedIpRanges array

@description('Principal id of the hub identity (Key Vault Secrets User).')
param appPrincipalId string

@description('Principal that sets the secret values (Key Vault Secrets Officer); empty for none.')
param operatorPrincipalId string

@description('Type of the operator principal.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param operatorPrincipalType string

@description('Log Analytics workspace that receives the vault audit log.')
param logAnalyticsWorkspaceId string

var publicMode = networkMode == 'public'
var keyVaultSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6'
var keyVaultSecretsOfficer = 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
var ipRules = [for range in allowedIpRanges: {
  value: range
}]

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_189: Public network access follows networkMode: disabled in private mode; in public mode the endpoint stays reachable only through a deny-by-default firewall that admits the app's subnet (service endpoint) and the operators' IP ranges, so operators can set secrets without a VPN.
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: softDeleteRetentionInDays
    enablePurgeProtection: true
    enabledForDeployment: false
    enabledForDiskEncryption: false
    enabledForTemplateDeployment: false
    // Interpolated so that checkov sees a string: its Key Vault public-access check crashes on an
    // unresolved conditional expression instead of reporting a result.
    #disable-next-line simplify-interpolation
    publicNetworkAccess: '${publicMode ? 'Enabled' : 'Disabled'}'
    networkAcls: {
      defaultAction: 'Deny'
      bypass: 'AzureServices'
      virtualNetworkRules: publicMode ? [
        {
          id: appSubnetId
          ignoreMissingVnetServiceEndpoint: false
        }
      ] : []
      ipRules: publicMode ? ipRules : []
    }
  }
}

// Vault scope: the secrets are created after deployment by an operator, so they cannot be
// role-assignment scopes at deployment time. The vault holds only the hub's secrets.
resource appSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, appPrincipalId, keyVaultSecretsUser)
  scope: vault
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
  }
}

resource operatorSecretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(operatorPrincipalId)) {
  name: guid(vault.id, operatorPrincipalId, keyVaultSecretsOfficer)
  scope: vault
  properties: {
    principalId: operatorPrincipalId
    principalType: operatorPrincipalType
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsOfficer)
  }
}

resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: vault
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        categoryGroup: 'audit'
        enabled: true
      }
    ]
    metrics: [
      {
        category: 'AllMetrics'
        enabled: true
      }
    ]
  }
}

output id string = vault.id
output name string = vault.name
output uri string = vault.properties.vaultUri
