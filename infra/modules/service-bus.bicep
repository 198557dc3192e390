// The Service Bus namespace and every queue the app binds to. Entra-only (local SAS auth disabled),
// TLS 1.2. Each queue: duplicate detection on MessageId, a bounded delivery count after which a
// message is dead-lettered, dead-lettering on expiry, and sessions where the flow needs per-key order.
// The hub identity gets Data Receiver and Data Sender on each queue, not on the namespace.

@description('Name of the namespace.')
param name string

@description('Azure region.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Standard, or Premium (required for virtual network rules and private endpoints).')
@allowed([
  'Standard'
  'Premium'
])
param skuName string

@description('Messaging units of a Premium namespace.')
@allowed([
  1
  2
  4
  8
  16
])
param premiumMessagingUnits int

@description('Queues: [{ name, requiresSession }].')
param queues array

@description('Deliveries before a message is dead-lettered (MaxDeliveryCountExceeded).')
@minValue(1)
@maxValue(2000)
param maxDeliveryCount int

@description('Duplicate-detection window (ISO 8601 duration, 20 seconds to 7 days).')
param duplicateDetectionWindow string

@description('Peek-lock duration (ISO 8601, at most PT5M); the Functions host renews it while a function runs.')
param lockDuration string

@description('Time to live of a message (ISO 8601); an expired message is dead-lettered.')
param messageTimeToLive string

@description('public: firewalled public endpoint; private: private endpoint only (Premium).')
@allowed([
  'public'
  'private'
])
param networkMode string

@description('The Function App integration subnet, admitted by the firewall in public mode (Premium).')
param appSubnetId string

@description('Public IP addresses or CIDR ranges admitted by the firewall in public mode (Premium).')
param allowedIpRanges array

@description('Principal id of the hub identity.')
param appPrincipalId string

@description('Log Analytics workspace that receives the namespace logs.')
param logAnalyticsWorkspaceId string

var premium = skuName == 'Premium'
var publicMode = networkMode == 'public'
var serviceBusDataReceiver = '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0'
var serviceBusDataSender = '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'
var ipRules = [for range in allowedIpRanges: {
  ipMask: range
  action: 'Allow'
}]

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: skuName
    tier: skuName
    capacity: premium ? premiumMessagingUnits : null
  }
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: publicMode ? 'Enabled' : 'Disabled'
  }
}

// Network rules exist on Premium only. A Standard namespace stays reachable from any network and is
// protected by Entra authentication alone: Flex Consumption has no fixed outbound address that an
// IP rule could admit, and Standard supports neither virtual network rules nor private endpoints.
resource networkRules 'Microsoft.ServiceBus/namespaces/networkRuleSets@2024-01-01' = if (premium) {
  parent: namespace
  name: 'default'
  properties: {
    publicNetworkAccess: publicMode ? 'Enabled' : 'Disabled'
    defaultAction: 'Deny'
    trustedServiceAccessEnabled: true
    virtualNetworkRules: publicMode ? [
      {
        subnet: {
          id: appSubnetId
        }
        ignoreMissingVnetServiceEndpoint: false
      }
    ] : []
    ipRules: publicMode ? ipRules : []
  }
}

resource queueResources 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = [for queue in queues: {
  parent: namespace
  name: queue.name
  properties: {
    requiresSession: queue.requiresSession
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: duplicateDetectionWindow
    maxDeliveryCount: maxDeliveryCount
    deadLetteringOnMessageExpiration: true
    defaultMessageTimeToLive: messageTimeToLive
    lockDuration: lockDuration
    enableBatchedOperations: true
    maxSizeInMegabytes: 1024
  }
}]

resource queueReceivers 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (queue, i) in queues: {
  name: guid(queueResources[i].id, appPrincipalId, serviceBusDataReceiver)
  scope: queueResources[i]
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', serviceBusDataReceiver)
  }
}]

resource queueSenders 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (queue, i) in queues: {
  name: guid(queueResources[i].id, appPrincipalId, serviceBusDataSender)
  scope: queueResources[i]
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', serviceBusDataSender)
  }
}]

resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: namespace
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        categoryGroup: 'allLogs'
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

output id string = namespace.id
output name string = namespace.name
// serviceBusEndpoint is https://<namespace>.<cloud suffix>:443/; the host name alone is what
// ServiceBusConnection__fullyQualifiedNamespace takes, whatever the cloud.
output fullyQualifiedNamespace string = split(replace(namespace.properties.serviceBusEndpoint, 'https://', ''), ':')[0]
