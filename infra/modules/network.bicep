// The hub's virtual network. The Function App is VNet-integrated in both network modes, because
// Flex Consumption has no fixed outbound addresses that a firewall could admit:
//
// - public:  the data services keep public endpoints behind firewalls that deny by default and
//            admit the app's integration subnet (service endpoints) plus the operators' IP ranges.
// - private: the data services disable public network access and are reached through private
//            endpoints in the private-endpoint subnet, resolved by the private DNS zones linked here.

@description('Name of the virtual network.')
param name string

@description('Azure region.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('public: firewalled public endpoints; private: private endpoints only.')
@allowed([
  'public'
  'private'
])
param networkMode string

@description('Address space of the virtual network.')
param addressPrefix string

@description('Subnet the Function App integrates with (delegated to Microsoft.App/environments, as Flex Consumption requires).')
param appSubnetPrefix string

@description('Subnet that holds the private endpoints (private mode).')
param privateEndpointSubnetPrefix string

@description('Add the Microsoft.ServiceBus service endpoint (public mode with a Premium namespace only: Standard namespaces do not support virtual network rules, and a subnet with the endpoint cannot reach them).')
param serviceBusServiceEndpoint bool

@description('Private DNS zones to create and link (private mode).')
param privateDnsZoneNames array

var publicMode = networkMode == 'public'
var dataServiceEndpoints = [
  {
    service: 'Microsoft.Storage'
  }
  {
    service: 'Microsoft.KeyVault'
  }
]
var serviceBusEndpoint = serviceBusServiceEndpoint ? [
  {
    service: 'Microsoft.ServiceBus'
  }
] : []
var appSubnetServiceEndpoints = publicMode ? concat(dataServiceEndpoints, serviceBusEndpoint) : []

resource appSubnetNsg 'Microsoft.Network/networkSecurityGroups@2023-11-01' = {
  name: '${name}-app-nsg'
  location: location
  tags: tags
  properties: {
    securityRules: []
  }
}

resource privateEndpointNsg 'Microsoft.Network/networkSecurityGroups@2023-11-01' = {
  name: '${name}-pe-nsg'
  location: location
  tags: tags
  properties: {
    securityRules: []
  }
}

resource vnet 'Microsoft.Network/virtualNetworks@2023-11-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        addressPrefix
      ]
    }
    subnets: [
      {
        name: 'snet-app'
        properties: {
          addressPrefix: appSubnetPrefix
          networkSecurityGroup: {
            id: appSubnetNsg.id
          }
          serviceEndpoints: appSubnetServiceEndpoints
          delegations: [
            {
              name: 'flex-consumption'
              properties: {
                serviceName: 'Microsoft.App/environments'
              }
            }
          ]
        }
      }
      {
        name: 'snet-private-endpoints'
        properties: {
          addressPrefix: privateEndpointSubnetPrefix
          networkSecurityGroup: {
            id: privateEndpointNsg.id
          }
          privateEndpointNetworkPolicies: 'Disabled'
        }
      }
    ]
  }
}

resource zones 'Microsoft.Network/privateDnsZones@2020-06-01' = [for zoneName in privateDnsZoneNames: {
  name: zoneName
  location: 'global'
  tags: tags
}]

resource zoneLinks 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2020-06-01' = [for (zoneName, i) in privateDnsZoneNames: {
  parent: zones[i]
  name: '${name}-link'
  location: 'global'
  tags: tags
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: vnet.id
    }
  }
}]

output id string = vnet.id
output appSubnetId string = resourceId('Microsoft.Network/virtualNetworks/subnets', vnet.name, 'snet-app')
output privateEndpointSubnetId string = resourceId('Microsoft.Network/virtualNetworks/subnets', vnet.name, 'snet-private-endpoints')
