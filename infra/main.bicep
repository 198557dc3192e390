// Contoso Data Hub: everything `azd up` provisions (docs/deploy.md).
//
// Subscription scope, as azd expects: the resource group is created here and every module deploys
// into it. The app settings are assembled in this file, in `appSettings`, and nowhere else:
// tests/unit/test_infra.py checks that they are exactly the settings the code and the bindings read.
// Connections are identity-based only: no connection string, key or secret is an app setting.
targetScope = 'subscription'

// --- azd ---------------------------------------------------------------------------------------

@minLength(1)
@maxLength(64)
@description('azd environment name; names the resource group and seeds every resource name.')
param environmentName string

@minLength(1)
@description('Azure region of every resource; it must offer Flex Consumption (az functionapp list-flexconsumption-locations).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Resource group to create; empty for rg-<environmentName>.')
param resourceGroupName string = ''

@description('Principal that runs azd (AZURE_PRINCIPAL_ID): it becomes Key Vault Secrets Officer to set the secret values. Empty for none.')
param principalId string = ''

@description('Type of principalId.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param principalType string = 'User'

// --- Network -----------------------------------------------------------------------------------

@description('public: storage, Service Bus and Key Vault keep public endpoints behind deny-by-default firewalls that admit the app subnet and allowedIpRanges. private: they are reachable only through private endpoints in the VNet (Service Bus is then Premium, the only tier with private endpoints).')
@allowed([
  'public'
  'private'
])
param networkMode string = 'public'

@description('Comma-separated public IP addresses or CIDR ranges the firewalls admit in public mode (operators setting secrets, reporting gateways). A single address without /32 (storage refuses /31 and /32).')
param allowedIpRanges string = ''

@description('Address space of the hub VNet.')
param vnetAddressPrefix string = '10.40.0.0/16'

@description('Subnet the Function App integrates with (Flex Consumption needs at least a /27 per app).')
param appSubnetPrefix string = '10.40.0.0/24'

@description('Subnet of the private endpoints (private mode).')
param privateEndpointSubnetPrefix string = '10.40.1.0/24'

// --- Service Bus -------------------------------------------------------------------------------

@description('Service Bus tier in public mode. Private mode always uses Premium.')
@allowed([
  'Standard'
  'Premium'
])
param serviceBusSku string = 'Standard'

@description('Messaging units when the namespace is Premium.')
@allowed([
  1
  2
  4
  8
  16
])
param serviceBusPremiumMessagingUnits int = 1

@description('Deliveries of a message before Service Bus dead-letters it. host.json lets a failing function raise, so this bounds the retries of a transient failure.')
@minValue(1)
@maxValue(100)
param maxDeliveryCount int = 10

@description('Duplicate-detection window of every queue (ISO 8601).')
param duplicateDetectionWindow string = 'PT10M'

@description('Time to live of a queued message (ISO 8601); on expiry it is dead-lettered.')
param messageTimeToLive string = 'P14D'

// --- Storage -----------------------------------------------------------------------------------

@description('Replication of the Functions host storage account.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
])
param hostStorageSku string = 'Standard_LRS'

@description('Replication of the data lake account (archive tier only on LRS, GRS, RA-GRS).')
@allowed([
  'Standard_LRS'
  'Standard_GRS'
  'Standard_RAGRS'
  'Standard_ZRS'
  'Standard_GZRS'
  'Standard_RAGZRS'
])
param lakeStorageSku string = 'Standard_GRS'

@description('Days after which a bronze page moves to the cool tier.')
@minValue(1)
param bronzeCoolAfterDays int = 30

@description('Days after which a bronze page moves to the archive tier (0: never).')
@minValue(0)
param bronzeArchiveAfterDays int = 180

@description('Days a deleted lake blob or container can be restored.')
@minValue(1)
@maxValue(365)
param lakeSoftDeleteDays int = 7

// --- Function App ------------------------------------------------------------------------------

@description('Memory of one Function App instance (MB). The lake jobs (polars, delta-rs) want 2048 or more.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Upper bound on Function App instances. Dataverse allows 52 concurrent requests per user across all instances; host.json runs 8 Service Bus calls per instance.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 20

@description('Zone-redundant Flex Consumption plan (only where the region supports it).')
param zoneRedundant bool = false

// --- Monitoring --------------------------------------------------------------------------------

@description('Days Log Analytics keeps data.')
@minValue(30)
@maxValue(730)
param logRetentionInDays int = 30

@description('Comma-separated e-mail addresses the alerts notify (empty: alerts show in the portal only).')
param alertEmailAddresses string = ''

@description('Per scheduled function: minutes without a successful run before the job-lag alert fires. Every timer function needs an entry (tests/unit/test_infra.py checks it); raise a threshold when you slow down its schedule.')
param jobLagThresholdMinutes object = {
  quote_qualification: 30
  lake_ingest: 30
  mainframe_poll: 30
  dataverse_to_lake: 30
  dataverse_load: 60
  gold_rebuild: 180
  sap_inbound: 60
  sap_outbound: 60
  reconcile: 1560
  dashboard_snapshot: 30
}

@description('Days a deleted Key Vault (and its name) stays recoverable; purge protection forbids purging it sooner.')
@minValue(7)
@maxValue(90)
param keyVaultSoftDeleteRetentionInDays int = 90

// --- Integration endpoints (no defaults: azd prompts for them, or set them with azd env set) ---

@description('Dataverse environment URL, https://<org>.crm.dynamics.com (DATAVERSE_URL).')
param dataverseUrl string

@description('Client id of the app registration bound to the Dataverse application user (DATAVERSE_CLIENT_ID).')
param dataverseClientId string

@description('SAP S/4HANA host, e.g. https://<tenant>-api.s4hanacloud.ondemand.com (SAP_BASE_URL).')
param sapBaseUrl string

@description('SAP communication user (SAP_USERNAME).')
param sapUsername string

@description('SAP client (mandant), three digits; empty for the system default (SAP_CLIENT).')
param sapClient string = ''

@description('Legacy order system gateway URL (MAINFRAME_BASE_URL).')
param mainframeBaseUrl string

@description('Client id registered with the mainframe token endpoint (MAINFRAME_CLIENT_ID).')
param mainframeClientId string

@description('Where the hub posts signed status callbacks to the Quoting Tool (QUOTING_TOOL_CALLBACK_URL).')
param quotingToolCallbackUrl string

// --- Schedules and tuning (defaults are those of shared/config.py) ------------------------------

@description('NCRONTAB (UTC) of the Dataverse change-tracking timer, flow 7 qualification callbacks.')
param dataverseChangesSchedule string = '0 */2 * * * *'

@description('Comma-separated quote status names that mean "qualified".')
param quoteQualifiedStatuses string = 'Active'

@description('NCRONTAB (UTC) of the SAP to hub batch (flow 10).')
param sapInboundSchedule string = '0 */15 * * * *'

@description('NCRONTAB (UTC) of the hub to SAP batch (flow 11).')
param sapOutboundSchedule string = '0 */15 * * * *'

@description('NCRONTAB (UTC) of the changed-only mainframe poll (flow 5).')
param mainframePollSchedule string = '0 */5 * * * *'

@description('Seconds each mainframe poll re-reads to absorb clock skew.')
@minValue(0)
@maxValue(86400)
param mainframeOverlapSeconds int = 120

@description('NCRONTAB (UTC) of the gold rebuild.')
param goldRebuildSchedule string = '0 15 * * * *'

@description('NCRONTAB (UTC) of the silver to Dataverse load (flow 6).')
param dataverseLoadSchedule string = '0 */10 * * * *'

@description('NCRONTAB (UTC) of the Dataverse to lake export (flow 7).')
param dataverseExportSchedule string = '0 */5 * * * *'

@description('NCRONTAB (UTC) of the Quoting Tool bronze to silver job.')
param lakeIngestSchedule string = '0 */1 * * * *'

@description('NCRONTAB (UTC) of the daily reconciliation across the Quoting Tool, Dataverse and the lake.')
param reconcileSchedule string = '0 0 2 * * *'

@description('NCRONTAB (UTC) of the dashboard snapshot (gold figures of GET /api/dashboard).')
param dashboardSnapshotSchedule string = '0 */5 * * * *'

@description('Seconds an SAP availability answer is reused in-process (0 disables).')
@minValue(0)
@maxValue(3600)
param availabilityCacheSeconds int = 30

@description('Timeout of one outbound HTTP request (seconds).')
@minValue(1)
@maxValue(230)
param httpTimeoutSeconds int = 30

@description('Attempts per outbound request before a transient failure surfaces.')
@minValue(1)
@maxValue(20)
param retryMaxAttempts int = 6

@description('First backoff step in seconds (a decimal number; doubles per attempt, full jitter).')
param retryBaseDelaySeconds string = '0.5'

@description('Cap on any single wait, including a peer\'s Retry-After (seconds).')
@minValue(0)
@maxValue(300)
param retryMaxDelaySeconds int = 60

// --- Names -------------------------------------------------------------------------------------

var token = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
  application: 'contoso-data-hub'
}
var privateMode = networkMode == 'private'
var serviceBusEffectiveSku = privateMode ? 'Premium' : serviceBusSku
var functionAppName = 'func-hub-${token}'
var deploymentContainerName = 'app-package-${take(functionAppName, 32)}-${take(token, 7)}'
var ipRanges = empty(allowedIpRanges) ? [] : split(replace(allowedIpRanges, ' ', ''), ',')
var alertEmails = empty(alertEmailAddresses) ? [] : split(replace(alertEmailAddresses, ' ', ''), ',')

// The Key Vault secrets the app reads, by the names its settings give (values: docs/deploy.md).
var secretNames = {
  dataverseClientSecret: 'dataverse-client-secret'
  sapPassword: 'sap-communication-user-password'
  mainframeClientSecret: 'mainframe-client-secret'
  quotingToolHmacSecret: 'quoting-tool-hmac-secret'
}

// Every queue the app binds to. The urgent order queues (flow 12) keep each order's updates in
// order, so they are session-enabled (session id = order number); requiresSession cannot be changed
// on an existing queue.
var queueNames = {
  quotes: 'quotes-to-dataverse'
  urgentSapToDataverse: 'urgent-sap-to-dataverse'
  urgentDataverseToSap: 'urgent-dataverse-to-sap'
}
var queues = [
  {
    name: queueNames.quotes
    requiresSession: false
  }
  {
    name: queueNames.urgentSapToDataverse
    requiresSession: true
  }
  {
    name: queueNames.urgentDataverseToSap
    requiresSession: true
  }
]

var blobZone = 'privatelink.blob.${environment().suffixes.storage}'
var dfsZone = 'privatelink.dfs.${environment().suffixes.storage}'
var tableZone = 'privatelink.table.${environment().suffixes.storage}'
var serviceBusZone = 'privatelink.servicebus.windows.net'
var keyVaultZone = 'privatelink.vaultcore.azure.net'
var privateEndpointSpecs = [
  {
    key: 'host-blob'
    target: 'hostStorage'
    groupId: 'blob'
    zone: blobZone
  }
  {
    key: 'lake-blob'
    target: 'lake'
    groupId: 'blob'
    zone: blobZone
  }
  {
    key: 'lake-dfs'
    target: 'lake'
    groupId: 'dfs'
    zone: dfsZone
  }
  {
    key: 'lake-table'
    target: 'lake'
    groupId: 'table'
    zone: tableZone
  }
  {
    key: 'servicebus'
    target: 'serviceBus'
    groupId: 'namespace'
    zone: serviceBusZone
  }
  {
    key: 'vault'
    target: 'keyVault'
    groupId: 'vault'
    zone: keyVaultZone
  }
]

// --- Resources ---------------------------------------------------------------------------------

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: !empty(resourceGroupName) ? resourceGroupName : 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'hub-identity'
  scope: rg
  params: {
    name: 'id-hub-${token}'
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'hub-monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-hub-${token}'
    applicationInsightsName: 'appi-hub-${token}'
    location: location
    tags: tags
    retentionInDays: logRetentionInDays
    appPrincipalId: identity.outputs.principalId
  }
}

module network 'modules/network.bicep' = {
  name: 'hub-network'
  scope: rg
  params: {
    name: 'vnet-hub-${token}'
    location: location
    tags: tags
    networkMode: networkMode
    addressPrefix: vnetAddressPrefix
    appSubnetPrefix: appSubnetPrefix
    privateEndpointSubnetPrefix: privateEndpointSubnetPrefix
    serviceBusServiceEndpoint: serviceBusEffectiveSku == 'Premium'
    privateDnsZoneNames: privateMode ? [
      blobZone
      dfsZone
      tableZone
      serviceBusZone
      keyVaultZone
    ] : []
  }
}

module hostStorage 'modules/host-storage.bicep' = {
  name: 'hub-host-storage'
  scope: rg
  params: {
    name: 'sthub${take(token, 13)}'
    location: location
    tags: tags
    skuName: hostStorageSku
    deploymentContainerName: deploymentContainerName
    networkMode: networkMode
    appSubnetId: network.outputs.appSubnetId
    allowedIpRanges: ipRanges
    appPrincipalId: identity.outputs.principalId
  }
}

module lake 'modules/lake-storage.bicep' = {
  name: 'hub-lake'
  scope: rg
  params: {
    name: 'dlhub${take(token, 13)}'
    location: location
    tags: tags
    lakeSku: lakeStorageSku
    bronzeCoolAfterDays: bronzeCoolAfterDays
    bronzeArchiveAfterDays: bronzeArchiveAfterDays
    softDeleteRetentionDays: lakeSoftDeleteDays
    networkMode: networkMode
    appSubnetId: network.outputs.appSubnetId
    allowedIpRanges: ipRanges
    appPrincipalId: identity.outputs.principalId
  }
}

module serviceBus 'modules/service-bus.bicep' = {
  name: 'hub-service-bus'
  scope: rg
  params: {
    name: 'sb-hub-${token}'
    location: location
    tags: tags
    skuName: serviceBusEffectiveSku
    premiumMessagingUnits: serviceBusPremiumMessagingUnits
    queues: queues
    maxDeliveryCount: maxDeliveryCount
    duplicateDetectionWindow: duplicateDetectionWindow
    lockDuration: 'PT1M'
    messageTimeToLive: messageTimeToLive
    networkMode: networkMode
    appSubnetId: network.outputs.appSubnetId
    allowedIpRanges: ipRanges
    appPrincipalId: identity.outputs.principalId
    logAnalyticsWorkspaceId: monitoring.outputs.workspaceId
  }
}

module keyVault 'modules/key-vault.bicep' = {
  name: 'hub-key-vault'
  scope: rg
  params: {
    name: 'kv-hub-${take(token, 13)}'
    location: location
    tags: tags
    softDeleteRetentionInDays: keyVaultSoftDeleteRetentionInDays
    networkMode: networkMode
    appSubnetId: network.outputs.appSubnetId
    allowedIpRanges: ipRanges
    appPrincipalId: identity.outputs.principalId
    operatorPrincipalId: principalId
    operatorPrincipalType: principalType
    logAnalyticsWorkspaceId: monitoring.outputs.workspaceId
  }
}

var privateEndpointTargets = {
  hostStorage: hostStorage.outputs.id
  lake: lake.outputs.id
  serviceBus: serviceBus.outputs.id
  keyVault: keyVault.outputs.id
}

module privateEndpoints 'modules/private-endpoint.bicep' = [for spec in privateEndpointSpecs: if (privateMode) {
  name: 'hub-pe-${spec.key}'
  scope: rg
  dependsOn: [
    network
  ]
  params: {
    name: 'pe-${spec.key}-${token}'
    location: location
    tags: tags
    subnetId: network.outputs.privateEndpointSubnetId
    targetResourceId: privateEndpointTargets[spec.target]
    groupId: spec.groupId
    privateDnsZoneName: spec.zone
  }
}]

// Every app setting of the Function App. Connections: X__accountName / X__fullyQualifiedNamespace
// with X__credential = managedidentity and X__clientId = the user-assigned identity. Not set here,
// on purpose: FUNCTIONS_WORKER_RUNTIME (Flex Consumption takes the runtime from
// functionAppConfig.runtime), AzureWebJobsFeatureFlags (worker indexing is the host default),
// AZURE_CLIENT_SECRET and HUB_CA_BUNDLE (local sandbox only).
var appSettings = {
  AzureWebJobsStorage__accountName: hostStorage.outputs.name
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identity.outputs.clientId
  ServiceBusConnection__fullyQualifiedNamespace: serviceBus.outputs.fullyQualifiedNamespace
  ServiceBusConnection__credential: 'managedidentity'
  ServiceBusConnection__clientId: identity.outputs.clientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: monitoring.outputs.connectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.outputs.clientId};Authorization=AAD'
  QUOTES_QUEUE_NAME: queueNames.quotes
  URGENT_SAP_TO_DATAVERSE_QUEUE_NAME: queueNames.urgentSapToDataverse
  URGENT_DATAVERSE_TO_SAP_QUEUE_NAME: queueNames.urgentDataverseToSap
  AZURE_TENANT_ID: tenant().tenantId
  AZURE_AUTHORITY_HOST: environment().authentication.loginEndpoint
  AZURE_CLIENT_ID: identity.outputs.clientId
  KEY_VAULT_URL: keyVault.outputs.uri
  DATAVERSE_URL: dataverseUrl
  DATAVERSE_CLIENT_ID: dataverseClientId
  DATAVERSE_CLIENT_SECRET_NAME: secretNames.dataverseClientSecret
  DATAVERSE_CHANGES_SCHEDULE: dataverseChangesSchedule
  QUOTE_QUALIFIED_STATUSES: quoteQualifiedStatuses
  SAP_BASE_URL: sapBaseUrl
  SAP_USERNAME: sapUsername
  SAP_CLIENT: sapClient
  SAP_PASSWORD_SECRET_NAME: secretNames.sapPassword
  SAP_INBOUND_SCHEDULE: sapInboundSchedule
  SAP_OUTBOUND_SCHEDULE: sapOutboundSchedule
  MAINFRAME_BASE_URL: mainframeBaseUrl
  MAINFRAME_CLIENT_ID: mainframeClientId
  MAINFRAME_CLIENT_SECRET_NAME: secretNames.mainframeClientSecret
  MAINFRAME_POLL_SCHEDULE: mainframePollSchedule
  MAINFRAME_OVERLAP_SECONDS: mainframeOverlapSeconds
  GOLD_REBUILD_SCHEDULE: goldRebuildSchedule
  DATAVERSE_LOAD_SCHEDULE: dataverseLoadSchedule
  DATAVERSE_EXPORT_SCHEDULE: dataverseExportSchedule
  QUOTING_TOOL_CALLBACK_URL: quotingToolCallbackUrl
  QUOTING_TOOL_HMAC_SECRET_NAME: secretNames.quotingToolHmacSecret
  LAKE_BLOB_URL: lake.outputs.blobEndpoint
  LAKE_TABLE_URL: lake.outputs.tableEndpoint
  LAKE_USE_EMULATOR: 'false'
  LAKE_INGEST_SCHEDULE: lakeIngestSchedule
  RECONCILE_SCHEDULE: reconcileSchedule
  DASHBOARD_SNAPSHOT_SCHEDULE: dashboardSnapshotSchedule
  AVAILABILITY_CACHE_SECONDS: availabilityCacheSeconds
  HTTP_TIMEOUT_SECONDS: httpTimeoutSeconds
  RETRY_MAX_ATTEMPTS: retryMaxAttempts
  RETRY_BASE_DELAY_SECONDS: retryBaseDelaySeconds
  RETRY_MAX_DELAY_SECONDS: retryMaxDelaySeconds
}

module functionApp 'modules/function-app.bicep' = {
  name: 'hub-function-app'
  scope: rg
  dependsOn: [
    privateEndpoints
  ]
  params: {
    planName: 'plan-hub-${token}'
    appName: functionAppName
    location: location
    tags: tags
    serviceName: 'hub'
    identityId: identity.outputs.id
    deploymentContainerUrl: hostStorage.outputs.deploymentContainerUrl
    appSubnetId: network.outputs.appSubnetId
    appSettings: appSettings
    pythonVersion: '3.13'
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    zoneRedundant: zoneRedundant
  }
}

module alerts 'modules/alerts.bicep' = {
  name: 'hub-alerts'
  scope: rg
  params: {
    location: location
    tags: tags
    namePrefix: 'hub-${token}'
    applicationInsightsId: monitoring.outputs.applicationInsightsId
    serviceBusNamespaceId: serviceBus.outputs.id
    alertEmailAddresses: alertEmails
    jobLagThresholdMinutes: jobLagThresholdMinutes
  }
}

// --- Outputs (azd stores them in .azure/<env>/.env; `azd env get-values` prints them) ------------

output AZURE_LOCATION string = location
output AZURE_RESOURCE_GROUP string = rg.name
output SERVICE_HUB_NAME string = functionApp.outputs.name
output SERVICE_HUB_URI string = functionApp.outputs.uri
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output AZURE_SERVICE_BUS_NAMESPACE string = serviceBus.outputs.name
output AZURE_LAKE_ACCOUNT_NAME string = lake.outputs.name
output AZURE_HOST_STORAGE_ACCOUNT_NAME string = hostStorage.outputs.name
output KEY_VAULT_SECRET_NAMES array = [
  secretNames.dataverseClientSecret
  secretNames.sapPassword
  secretNames.mainframeClientSecret
  secretNames.quotingToolHmacSecret
]
// The app settings derived from what this deployment created, under the app settings' own names,
// so `azd env get-values` gives an operator's shell the same view as the app (datahub CLI,
// smoke test). The identity's client id is output as HUB_IDENTITY_CLIENT_ID rather than
// AZURE_CLIENT_ID: in a shell, azure-identity and azd would take AZURE_CLIENT_ID as the
// operator's own identity.
output AZURE_TENANT_ID string = appSettings.AZURE_TENANT_ID
output AZURE_AUTHORITY_HOST string = appSettings.AZURE_AUTHORITY_HOST
output HUB_IDENTITY_CLIENT_ID string = appSettings.AZURE_CLIENT_ID
output AzureWebJobsStorage__accountName string = appSettings.AzureWebJobsStorage__accountName
output ServiceBusConnection__fullyQualifiedNamespace string = appSettings.ServiceBusConnection__fullyQualifiedNamespace
output APPLICATIONINSIGHTS_CONNECTION_STRING string = appSettings.APPLICATIONINSIGHTS_CONNECTION_STRING
output QUOTES_QUEUE_NAME string = appSettings.QUOTES_QUEUE_NAME
output URGENT_SAP_TO_DATAVERSE_QUEUE_NAME string = appSettings.URGENT_SAP_TO_DATAVERSE_QUEUE_NAME
output URGENT_DATAVERSE_TO_SAP_QUEUE_NAME string = appSettings.URGENT_DATAVERSE_TO_SAP_QUEUE_NAME
output KEY_VAULT_URL string = appSettings.KEY_VAULT_URL
output DATAVERSE_CLIENT_SECRET_NAME string = appSettings.DATAVERSE_CLIENT_SECRET_NAME
output SAP_PASSWORD_SECRET_NAME string = appSettings.SAP_PASSWORD_SECRET_NAME
output MAINFRAME_CLIENT_SECRET_NAME string = appSettings.MAINFRAME_CLIENT_SECRET_NAME
output QUOTING_TOOL_HMAC_SECRET_NAME string = appSettings.QUOTING_TOOL_HMAC_SECRET_NAME
output LAKE_BLOB_URL string = appSettings.LAKE_BLOB_URL
output LAKE_TABLE_URL string = appSettings.LAKE_TABLE_URL
output LAKE_USE_EMULATOR string = appSettings.LAKE_USE_EMULATOR
