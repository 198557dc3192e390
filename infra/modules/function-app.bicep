// The hub's Function App on a Flex Consumption plan, Python 3.13 (v2 programming model).
//
// Flex Consumption specifics (Learn: flex-consumption-plan, functions-app-settings "Flex Consumption
// plan deprecations"):
// - the worker runtime and its version live in functionAppConfig.runtime, not in the
//   FUNCTIONS_WORKER_RUNTIME app setting or siteConfig.linuxFxVersion, which the plan rejects;
// - the package is deployed to a blob container named in functionAppConfig.deployment, read with
//   the managed identity;
// - scale is set per app in functionAppConfig.scaleAndConcurrency, and siteConfig properties of
//   the other plans (alwaysOn, ftpsState, functionAppScaleLimit, ...) are refused, so siteConfig
//   carries only the app settings and the TLS/HTTP options.

@description('Name of the Flex Consumption plan.')
param planName string

@description('Name of the Function App (also its host name).')
param appName string

@description('Azure region.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('azd service name in azure.yaml; azd finds the app by the azd-service-name tag.')
param serviceName string

@description('Resource id of the user-assigned identity the app runs as.')
param identityId string

@description('URL of the host-storage blob container Flex Consumption deploys the package to.')
param deploymentContainerUrl string

@description('Subnet the app integrates with.')
param appSubnetId string

@description('App settings, name to value (set in main.bicep, where tests/unit/test_infra.py checks them).')
param appSettings object

@description('Python version of the worker.')
param pythonVersion string

@description('Memory of one instance (MB).')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int

@description('Upper bound on instances the platform scales out to.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int

@description('Spread the plan\'s instances across availability zones (where the region supports it for Flex Consumption).')
param zoneRedundant bool

var siteAppSettings = [for setting in items(appSettings): {
  name: setting.key
  value: string(setting.value)
}]

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: Zone redundancy of a Flex Consumption plan is a regional capability; it is the zoneRedundant parameter (off by default so the template deploys in every Flex region), set it to true where the region supports it.
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
    zoneRedundant: zoneRedundant
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_17: Client certificates are not part of the partner contract: the Quoting Tool authenticates with a function key over TLS 1.2+, and callbacks to it are HMAC-signed.
  // checkov:skip=CKV_AZURE_222: The HTTP API serves the Quoting Tool over the internet; only the data services (storage, Service Bus, Key Vault) are private. Inbound is limited to HTTPS with function keys.
  // checkov:skip=CKV_AZURE_212: Flex Consumption scales instances itself (scale to zero, up to maximumInstanceCount); siteConfig.numberOfWorkers does not apply to the plan.
  // checkov:skip=CKV_AZURE_213: App Service health-check eviction does not apply to Flex Consumption, whose instances the platform manages; readiness is GET /api/health?ready=1, used by the deployment smoke test (docs/deploy.md).
  // checkov:skip=CKV_AZURE_78: Flex Consumption has no FTP endpoint and refuses siteConfig.ftpsState; basic publishing credentials (FTP and SCM) are disabled below instead.
  name: appName
  location: location
  tags: union(tags, {
    'azd-service-name': serviceName
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    publicNetworkAccess: 'Enabled'
    virtualNetworkSubnetId: appSubnetId
    siteConfig: {
      appSettings: siteAppSettings
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      http20Enabled: true
      remoteDebuggingEnabled: false
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
  }
}

// azd and Core Tools deploy to Flex Consumption with an Entra token (`func azure functionapp
// publish` sends `Authorization: Bearer`), so the basic-auth publishing credentials stay off.
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

output id string = site.id
output name string = site.name
output uri string = 'https://${site.properties.defaultHostName}'
